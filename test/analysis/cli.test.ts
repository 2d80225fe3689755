import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { lastJson, runCli } from '../cli/run-cli.js';

interface Summary {
  linears: { site: string; observations: { clsToken: { holds: boolean; stdRatio: number }; channelOutliers: { holds: boolean; maxOverMedian: number }; longTail: { holds: boolean } } }[];
  calibratedNote: string | null;
}

test('ptq4vm analyze on the embedded model writes the plots, their JSON and the page', { timeout: 300000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ptq4vm-analyze-'));
  try {
    const out = join(dir, 'report');
    const r = await runCli(['analyze', '--model', 'vim-fmnist', '--calib', 'fmnist-train', '--calib-size', '24', '--blocks', '3',
      '--layers', 'out_proj,in_proj', '--steps', '0', '--bins', '40', '--out', out, '--json'], { timeoutMs: 280000 });
    assert.equal(r.code, 0, r.stderr);
    const res = lastJson<{ plots: string[]; index: string; observations: { key: string; holds: number; of: number }[] }>(r.stdout);
    assert.deepEqual(res.plots, ['b3-errors', 'b3-in_proj-tokens', 'b3-in_proj-channels', 'b3-in_proj-histogram', 'b3-out_proj-tokens', 'b3-out_proj-channels', 'b3-out_proj-histogram']);
    for (const p of res.plots) for (const ext of ['png', 'json']) assert.ok(existsSync(join(out, `${p}.${ext}`)), `${p}.${ext}`);
    assert.ok(existsSync(res.index));
    assert.equal(JSON.parse(readFileSync(join(out, 'b3-out_proj-histogram.json'), 'utf8')).counts.length, 40);
    const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8')) as Summary;
    assert.equal(summary.calibratedNote, '--steps 0');
    // On the embedded model the scan output (out_proj's input) shows all three obstacles; the
    // RMSNorm output (in_proj's input) shows none (docs/analysis.md).
    const site = (s: string) => summary.linears.find((l) => l.site === s)!.observations;
    const outProj = site('layers.3.mixer.out_proj');
    assert.ok(outProj.clsToken.holds && outProj.clsToken.stdRatio > 2, `class token std ratio ${outProj.clsToken.stdRatio}`);
    assert.ok(outProj.channelOutliers.holds, `out_proj channels max/median ${outProj.channelOutliers.maxOverMedian}`);
    assert.ok(outProj.longTail.holds);
    const inProj = site('layers.3.mixer.in_proj');
    assert.ok(!inProj.channelOutliers.holds && !inProj.clsToken.holds && !inProj.longTail.holds);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('ptq4vm analyze rejects bad blocks and linears with a usage error', async () => {
  for (const [args, message] of [
    [['--blocks', '8'], /--blocks must be in \[0, 7\]/],
    [['--layers', 'in_proj,q_proj'], /--layers must be one of in_proj/],
    [['--blocks', ''], /--blocks needs at least one entry/],
  ] as [string[], RegExp][]) {
    const r = await runCli(['analyze', '--model', 'vim-fmnist', '--calib', 'fmnist-train', '--out', join(tmpdir(), 'never-written'), ...args]);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message);
  }
  assert.ok(!existsSync(join(tmpdir(), 'never-written')));
});

test('ptq4vm analyze --quantized takes the last column from a calibrated file; a quantized --model is refused', { timeout: 300000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ptq4vm-analyze-q-'));
  try {
    const q = join(dir, 'rtn.safetensors');
    const c = await runCli(['calibrate', '--model', 'vim-fmnist', '--calib', 'fmnist-train', '--calib-size', '8', '--method', 'rtn', '--wbits', '6', '--abits', '6', '--out', q], { timeoutMs: 280000 });
    assert.equal(c.code, 0, c.stderr);
    const bad = await runCli(['analyze', '--model', q, '--calib', 'fmnist-train', '--out', join(dir, 'never')]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /is a quantized model; pass the FP model as --model and the quantized file as --quantized/);
    const out = join(dir, 'report');
    const r = await runCli(['analyze', '--model', 'vim-fmnist', '--quantized', q, '--calib', 'fmnist-train', '--calib-size', '8', '--blocks', '0',
      '--layers', 'x_proj_b', '--wbits', '6', '--abits', '6', '--out', out], { timeoutMs: 280000 });
    assert.equal(r.code, 0, r.stderr);
    const errors = JSON.parse(readFileSync(join(out, 'b0-errors.json'), 'utf8')) as { errors: { method: string; label: string; mse: number }[] };
    assert.deepEqual(errors.errors.map((e) => e.method), ['rtn-per-tensor', 'per-token-dynamic', 'pts', 'pts-smooth', 'calibrated']);
    const calibrated = errors.errors[4]!;
    assert.match(calibrated.label, /^RTN \(/);
    // The file's RTN quantizers were fitted on the same 8 images (block 0 sees the FP input): the same error as the RTN baseline.
    assert.ok(Math.abs(calibrated.mse - errors.errors[0]!.mse) <= 1e-6 * errors.errors[0]!.mse, `${calibrated.mse} vs ${errors.errors[0]!.mse}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
