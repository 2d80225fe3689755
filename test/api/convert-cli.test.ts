// `ptq4vm convert`: the fixture checkpoint converts and runs; bad input fails cleanly.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { packageRoot } from '../../lib/backend/addon.js';
import { readSafetensors } from '../../lib/io/safetensors.js';
import { loadVimModel } from '../../lib/models/load.js';
import { InferenceEngine } from '../../lib/runtime/engine.js';
import { fixture, NO_FIXTURES, relativeError } from '../helpers.js';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function cli(args: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(packageRoot(), 'bin', 'ptq4vm.js'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const pth = fixture('vim-ti-d2.pth');
const ref = fixture('vim-ti-d2.ref.safetensors');

describe('ptq4vm convert', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ptq4vm-convert-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('the official-layout fixture converts, loads, and runs to the reference logits', { skip: !pth || !ref ? NO_FIXTURES : false }, async () => {
    const out = join(dir, 'vim-ti-d2.safetensors');
    const r = await cli(['convert', pth!, out, '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    const summary = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { key: string; config: Record<string, number>; tensors: number; parameters: number };
    assert.equal(summary.key, 'model');
    assert.equal(summary.config.embed_dim, 192);
    assert.equal(summary.config.depth, 2);
    assert.equal(summary.config.img_size, 224);
    assert.equal(summary.config.num_classes, 1000);
    const model = await loadVimModel(out);
    assert.equal(model.config.embed_dim, 192);
    assert.equal(model.metadata.format, 'ptq4vm-fp/1');
    assert.equal(model.metadata.key, 'model');

    const refFile = await readSafetensors(ref!);
    const input = refFile.tensors.get('input')!.toFloat32();
    const want = refFile.tensors.get('logits')!.toFloat32();
    const engine = await InferenceEngine.start({ model: out, precision: 'fp32' });
    try {
      const { logits } = await engine.forward(input);
      assert.deepEqual(logits.shape, want.shape);
      const err = relativeError(logits.data, want.data);
      assert.ok(err < 1e-4, `relative error ${err}`);
    } finally {
      await engine.dispose();
    }
  });

  test('--key model_ema and --img-size', { skip: !pth ? NO_FIXTURES : false }, async () => {
    const out = join(dir, 'ema.safetensors');
    const r = await cli(['convert', pth!, out, '--key', 'model_ema', '--img-size', '224', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const model = await loadVimModel(out);
    assert.equal(model.metadata.key, 'model_ema');
    assert.equal(model.config.img_size, 224);
    // A 14×14 grid of 16-pixel patches (stride 16) cannot come from 448-pixel images.
    const wrongSize = await cli(['convert', pth!, join(dir, 'y.safetensors'), '--img-size', '448']);
    assert.equal(wrongSize.code, 1);
    assert.match(wrongSize.stderr, /^ptq4vm: .*448/);
    const missing = await cli(['convert', pth!, join(dir, 'x.safetensors'), '--key', 'optimizer_state']);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /^ptq4vm: .*no "optimizer_state" entry/);
  });

  test('bad input: one-line error, exit 1, no output file and no temporary left', { skip: !pth ? NO_FIXTURES : false }, async () => {
    const good = await readFile(pth!);
    const bad: Array<[string, Uint8Array]> = [
      ['random.pth', Uint8Array.from({ length: 4096 }, (_, i) => (i * 2654435761) >>> 24)],
      ['truncated.pth', good.subarray(0, Math.floor(good.length * 0.6))],
      ['empty.pth', new Uint8Array(0)],
    ];
    for (const [name, bytes] of bad) {
      const inPath = join(dir, name);
      await writeFile(inPath, bytes);
      const out = join(dir, `${name}.safetensors`);
      const r = await cli(['convert', inPath, out]);
      assert.equal(r.code, 1, `${name}: ${r.stderr}`);
      assert.equal(r.stderr.split('\n').filter(Boolean).length, 1, `${name}: ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`^ptq4vm: .*${name}`));
      assert.equal(r.stdout, '');
    }
    const notThere = await cli(['convert', join(dir, 'nope.pth'), join(dir, 'nope.safetensors')]);
    assert.equal(notThere.code, 1);
    const left = (await readdir(dir)).filter((f) => f.endsWith('.safetensors') && !['vim-ti-d2.safetensors', 'ema.safetensors'].includes(f) || f.endsWith('.tmp'));
    assert.deepEqual(left, []);
  });

  test('usage errors exit 2', async () => {
    for (const args of [['convert'], ['convert', 'a.pth'], ['convert', 'a.pth', 'b.st', 'c'], ['convert', 'a.pth', 'b.st', '--bogus'],
      ['convert', 'a.pth', 'b.st', '--img-size', 'big'], ['convert', 'a.pth', 'a.pth']]) {
      const r = await cli(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /^ptq4vm: /);
    }
    const help = await cli(['convert', '--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /Usage: ptq4vm convert IN\.pth OUT\.safetensors/);
  });
});
