import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { preprocessFromModel, resolveDataset } from '../../lib/data/index.js';
import { readSafetensors } from '../../lib/io/safetensors.js';
import { loadVimModel } from '../../lib/models/load.js';
import { ModelRunner } from '../../lib/runtime/forward.js';
import { fixture, NO_FIXTURES, relativeError } from '../helpers.js';
import { lastJson, runCli } from './run-cli.js';

test('eval of the embedded model on the full Fashion-MNIST test set reproduces the reference', async (t) => {
  const refPath = fixture('vim-fmnist.ref.safetensors');
  if (!refPath) return t.skip(NO_FIXTURES);
  const ref = await readSafetensors(refPath);
  const dir = mkdtempSync(join(tmpdir(), 'ptq4vm-eval-'));
  try {
    const predsPath = join(dir, 'preds.json');
    const r = await runCli(['eval', '--model', 'vim-fmnist', '--data', 'fmnist', '--json', '--batch', '250', '--save-preds', predsPath], { timeoutMs: 600_000 });
    assert.equal(r.code, 0, r.stderr);
    const summary = lastJson<{ top1: number; top5: number; n: number; device: string; precision: string; images_per_s: number }>(r.stdout);
    assert.equal(summary.n, 10000);
    assert.equal(summary.device, 'cpu');
    assert.equal(summary.precision, 'fp32');
    assert.ok(summary.images_per_s > 0);
    const refTop1 = Number(ref.metadata.test_top1);
    assert.ok(Math.abs(summary.top1 - refTop1) <= 0.001, `top-1 ${summary.top1} vs reference ${refTop1}`);
    assert.ok(summary.top5 >= summary.top1 && summary.top5 <= 1);
    const preds = (JSON.parse(readFileSync(predsPath, 'utf8')) as { pred: number[] }).pred;
    const refPred = ref.tensors.get('pred')!.data as Int32Array;
    assert.equal(preds.length, refPred.length);
    let agree = 0;
    for (let i = 0; i < preds.length; i++) if (preds[i] === refPred[i]) agree++;
    assert.ok(agree / preds.length >= 0.999, `predictions agree on ${agree}/${preds.length}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('logits of the first 256 test images match the reference to 1e-4', async (t) => {
  const refPath = fixture('vim-fmnist.ref.safetensors');
  if (!refPath) return t.skip(NO_FIXTURES);
  const ref = (await readSafetensors(refPath)).tensors.get('logits_first256')!;
  const model = await loadVimModel('vim-fmnist');
  const data = await resolveDataset('fmnist');
  const preprocess = preprocessFromModel(model.config, { ...model.metadata });
  const runner = new ModelRunner(model);
  for await (const b of data.batches({ preprocess, batchSize: 256, limit: 256 })) {
    const logits = runner.forward(b.images);
    const err = relativeError(logits.data, ref.data as Float32Array);
    assert.ok(err < 1e-4, `relative error ${err}`);
  }
});
