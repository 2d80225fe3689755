import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { preprocessFromModel, resolveDataset } from '../../lib/data/index.js';
import { loadVimModel } from '../../lib/models/load.js';
import type { VimModel } from '../../lib/models/vim/model.js';
import { loadCalibrationImages } from '../../lib/quant/calib-data.js';
import { calibrate, type CalibrateOptions } from '../../lib/quant/calibrate.js';
import { writeQuantizedModel } from '../../lib/quant/file.js';
import { ModelRunner, type Precision } from '../../lib/runtime/forward.js';
import { topK } from '../../lib/runtime/evaluate.js';
import { Tensor } from '../../lib/tensor/tensor.js';

const dir = mkdtempSync(join(tmpdir(), 'ptq4vm-calib-'));
after(() => rmSync(dir, { recursive: true, force: true }));

let calibImages: Tensor<'F32'>;
let testImages: Tensor<'F32'>;
let testLabels: Int32Array;
const TEST_N = 1000;

before(async () => {
  const model = await loadVimModel('vim-fmnist');
  calibImages = await loadCalibrationImages(model, await resolveDataset('fmnist-train'), 64, 'vim-fmnist', 0);
  const data = await resolveDataset('fmnist');
  const preprocess = preprocessFromModel(model.config, { ...model.metadata });
  for await (const b of data.batches({ preprocess, batchSize: TEST_N, limit: TEST_N })) {
    testImages = b.images;
    testLabels = b.labels;
  }
});

function top1(model: VimModel, precision: Precision): number {
  const logits = new ModelRunner(model, { precision }).forward(testImages);
  let ok = 0;
  for (let i = 0; i < TEST_N; i++) if (topK(logits.data, 10, i, 1)[0] === testLabels[i]) ok++;
  return ok / TEST_N;
}

/**
 * A function-preserving rescaling that plants outlier channels in in_proj's input, as real
 * ImageNet Vims have: RMSNorm weight × f and in_proj's matching columns ÷ f.
 */
async function withOutlierChannels(factor: number, channels: number[]): Promise<VimModel> {
  const m = await loadVimModel('vim-fmnist');
  for (const layer of m.layers) {
    const w = layer.inProj.weight;
    const [out, inF] = w.shape as [number, number];
    for (const c of channels) {
      layer.norm.data[c]! *= factor;
      for (let o = 0; o < out; o++) w.data[o * inF + c]! /= factor;
    }
  }
  return m;
}

test('the outlier-channel rescaling preserves the FP function', async () => {
  const base = await loadVimModel('vim-fmnist');
  const scaled = await withOutlierChannels(300, [3, 17, 40]);
  const x = new Tensor('F32', [4, ...testImages.shape.slice(1)], testImages.data.subarray(0, 4 * 784));
  const a = new ModelRunner(base).forward(x).data;
  const b = new ModelRunner(scaled).forward(x).data;
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i]! - b[i]!) < 1e-3 * (1 + Math.abs(a[i]!)), `logit ${i}: ${a[i]} vs ${b[i]}`);
});

test('PTQ4VM calibrates a model with planted outlier channels to the same W8A8 accuracy; per-tensor RTN does not', async () => {
  const opts: CalibrateOptions = { method: 'ptq4vm-nojlss', wbits: 8, abits: 8 };
  const base = await loadVimModel('vim-fmnist');
  const fp = top1(base, 'fp32');
  calibrate(base, calibImages, opts);
  const baseAcc = top1(base, 'int8');
  const scaled = await withOutlierChannels(300, [3, 17, 40]);
  calibrate(scaled, calibImages, opts);
  const scaledAcc = top1(scaled, 'int8');
  assert.ok(Math.abs(scaledAcc - baseAcc) <= 0.005, `W8A8 PTQ4VM: ${scaledAcc} with outliers vs ${baseAcc} without`);
  assert.ok(Math.abs(scaledAcc - fp) <= 0.01, `W8A8 PTQ4VM with outliers ${scaledAcc} vs FP32 ${fp}`);
  const rtn = await withOutlierChannels(300, [3, 17, 40]);
  calibrate(rtn, calibImages, { method: 'rtn', wbits: 8, abits: 8 });
  const rtnAcc = top1(rtn, 'int8');
  assert.ok(rtnAcc < fp - 0.05, `per-tensor RTN should suffer from the outliers: ${rtnAcc} vs FP32 ${fp}`);
});

test('JLSS lowers every block loss, and a calibration is deterministic for a seed', async () => {
  const run = async () => {
    const m = await loadVimModel('vim-fmnist');
    m.layers.length = 2; // two blocks keep the test short; the head is unused here
    const report = calibrate(m, calibImages, { method: 'ptq4vm', wbits: 4, abits: 4, steps: 15, seed: 3 });
    return { m, report };
  };
  const a = await run();
  for (const b of a.report.blocks) {
    assert.equal(b.lossCurve.length, 15);
    assert.ok(b.lossAfter < b.lossBefore, `block ${b.block}: ${b.lossAfter} !< ${b.lossBefore}`);
    assert.ok(b.lossCurve[14]! < b.lossCurve[0]!, `block ${b.block}: the training loss went down`);
  }
  const b = await run();
  for (let i = 0; i < 2; i++) {
    for (const [name, site] of Object.entries(a.m.linears(i))) {
      const other = b.m.linears(i)[name as keyof ReturnType<VimModel['linears']>];
      assert.deepEqual(site.quant!.smooth, other.quant!.smooth, `${site.name} σ`);
      assert.deepEqual(site.quant!.actScale, other.quant!.actScale, `${site.name} activation steps`);
      assert.deepEqual(site.quant!.qweight, other.quant!.qweight, `${site.name} weights`);
    }
  }
});

test('the quantized file round-trips and the same seed gives the same bytes', async () => {
  const write = async (path: string) => {
    const m = await loadVimModel('vim-fmnist');
    calibrate(m, calibImages, { method: 'ptq4vm-nojlss', wbits: 4, abits: 8, seed: 5 });
    await writeQuantizedModel(path, m);
    return m;
  };
  const p1 = join(dir, 'a.safetensors');
  const p2 = join(dir, 'b.safetensors');
  const m = await write(p1);
  await write(p2);
  assert.deepEqual(readFileSync(p1), readFileSync(p2));
  const loaded = await loadVimModel(p1);
  assert.ok(loaded.isQuantized);
  assert.deepEqual(loaded.quantMetadata, m.quantMetadata);
  for (const s of loaded.allLinears()) {
    const orig = [...m.allLinears()].find((o) => o.name === s.name)!;
    assert.deepEqual(s.quant!.qweight, orig.quant!.qweight);
    assert.deepEqual(s.quant!.actZero, orig.quant!.actZero);
    assert.deepEqual(s.quant!.actScale, orig.quant!.actScale);
  }
  // The loaded file computes what the calibrated model in memory computed.
  const x = new Tensor('F32', [8, ...testImages.shape.slice(1)], testImages.data.subarray(0, 8 * 784));
  assert.deepEqual(new ModelRunner(loaded).forward(x).data, new ModelRunner(m).forward(x).data);
});
