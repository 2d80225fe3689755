import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { readSafetensors, writeSafetensors } from '../../lib/io/safetensors.js';
import { Tensor } from '../../lib/tensor/tensor.js';
import { fixture, NO_FIXTURES, relativeError } from '../helpers.js';
import { lastJson, runCli } from './run-cli.js';

const dir = mkdtempSync(join(tmpdir(), 'ptq4vm-infer-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('infer writes logits equal to the reference for vim-ti-d2', async (t) => {
  const model = fixture('vim-ti-d2.safetensors');
  const ref = fixture('vim-ti-d2.ref.safetensors');
  if (!model || !ref) return t.skip(NO_FIXTURES);
  const out = join(dir, 'logits.safetensors');
  const r = await runCli(['infer', '--model', model, '--input', ref, '--out', out]);
  assert.equal(r.code, 0, r.stderr);
  const got = (await readSafetensors(out)).tensors.get('logits')!;
  const want = (await readSafetensors(ref)).tensors.get('logits')!;
  assert.deepEqual(got.shape, want.shape);
  assert.ok(relativeError(got.data as Float32Array, want.data as Float32Array) < 1e-4);
});

test('info describes the embedded model', async () => {
  const r = await runCli(['info', 'vim-fmnist', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const info = lastJson<{ config: { depth: number; embed_dim: number }; parameters: number; seqLen: number; quantization: unknown }>(r.stdout);
  assert.equal(info.config.depth, 8);
  assert.equal(info.config.embed_dim, 96);
  assert.equal(info.seqLen, 50);
  assert.equal(info.quantization, null);
  assert.ok(info.parameters > 100_000);
  const text = await runCli(['info', 'vim-fmnist']);
  assert.match(text.stdout, /8 blocks, embed 96/);
});

test('a corrupt model file is a one-line error, exit 1, and leaves no output file', async () => {
  const src = readFileSync(join(process.cwd(), 'assets', 'models', 'vim-fmnist.safetensors'));
  const bad = join(dir, 'truncated.safetensors');
  writeFileSync(bad, src.subarray(0, src.length - 1000));
  const input = join(dir, 'input.safetensors');
  await writeSafetensors(input, new Map([['input', Tensor.f32([1, 1, 28, 28], new Float32Array(784).map((_, i) => Math.cos(i)))]]));
  const out = join(dir, 'never.safetensors');
  const before = new Set(readdirSync(dir));
  const r = await runCli(['infer', '--model', bad, '--input', input, '--out', out]);
  assert.equal(r.code, 1);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  assert.match(r.stderr, /truncated\.safetensors/);
  assert.ok(!existsSync(out));
  assert.deepEqual(new Set(readdirSync(dir)), before, 'no temporary files left behind');
});

test('input of the wrong shape is rejected with a clear error', async () => {
  const input = join(dir, 'wrong.safetensors');
  await writeSafetensors(input, new Map([['input', Tensor.f32([2, 3, 28, 28], new Float32Array(2 * 3 * 784).fill(0.5))]]));
  const r = await runCli(['infer', '--model', 'vim-fmnist', '--input', input, '--out', join(dir, 'x.safetensors')]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /shape \[2, 3, 28, 28\].*\[B, 1, 28, 28\]/);
});

test('usage errors exit with code 2', async () => {
  for (const args of [['infer', '--model', 'vim-fmnist'], ['eval', '--bogus'], ['nonsense'], ['eval', '--model', 'vim-fmnist', '--data', 'fmnist', '--batch', 'x']]) {
    const r = await runCli(args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, /^ptq4vm: /);
  }
  const missing = await runCli(['info', join(dir, 'does-not-exist.safetensors')]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /not found/);
});
