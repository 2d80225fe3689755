// The programmatic API on the embedded model: loadModel, classify (images and tensors), errors.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import {
  DataError, EngineError, FASHION_MNIST_CLASSES, InputError, loadModel, ModelLoadError, runtimeInfo, Tensor, type Model,
} from '../../lib/index.js';
import { resolveDataset } from '../../lib/data/index.js';
import { readSafetensors } from '../../lib/io/safetensors.js';
import { topK } from '../../lib/runtime/evaluate.js';
import { fixture, NO_FIXTURES, relativeError } from '../helpers.js';
import { fmnistPngs, smoothJpeg, type FmnistPngs } from '../server/bodies.js';

const N = 96;

describe('loadModel / Model.classify (vim-fmnist)', () => {
  let model: Model;
  let data: FmnistPngs;
  /** The idx images as eval feeds them, and their logits through the engine in one forward. */
  let images: Tensor<'F32'>;
  let logits: Tensor<'F32'>;

  before(async () => {
    model = await loadModel('vim-fmnist');
    data = await fmnistPngs(N);
    const ds = await resolveDataset('fmnist');
    for await (const b of ds.batches({ preprocess: model.preprocess, batchSize: N, limit: N })) images = b.images;
    logits = await model.logits(images);
  });
  after(async () => {
    await model?.dispose();
  });

  test('runtimeInfo is exported from the package entry', () => {
    const r = runtimeInfo();
    assert.ok(['scalar', 'avx2', 'avx512', 'avx512vnni'].includes(r.cpu.isa));
    assert.ok(r.cpu.threads >= 1);
    assert.equal(typeof r.cuda.built, 'boolean');
  });

  test('info, labels and preprocessing come from the model', () => {
    assert.equal(model.info.classes, 10);
    assert.equal(model.info.precision, 'fp32');
    assert.deepEqual(model.labels, FASHION_MNIST_CLASSES);
    assert.deepEqual(model.inputShape, [1, 28, 28]);
    // Fashion-MNIST images are model-sized: no resize, no crop.
    assert.equal(model.preprocess.resize, 28);
    assert.ok(Math.abs(model.preprocess.mean[0]! - 0.286) < 1e-3);
  });

  test('PNG images: the predictions and softmax probabilities of the engine on the same images', async () => {
    const out = await model.classify(data.pngs, { topk: 3 });
    assert.equal(out.length, N);
    for (let i = 0; i < N; i++) {
      const row = logits.data.subarray(i * 10, (i + 1) * 10);
      const want = topK(logits.data, 10, i, 3);
      assert.deepEqual(out[i]!.map((p) => p.class), want, `image ${i}`);
      const max = Math.max(...row);
      const z = row.reduce((a, v) => a + Math.exp(v - max), 0);
      for (const p of out[i]!) {
        assert.ok(Math.abs(p.prob - Math.exp(row[p.class]! - max) / z) < 1e-5, `image ${i} class ${p.class}`);
        assert.equal(p.label, FASHION_MNIST_CLASSES[p.class]);
      }
    }
  });

  test('tensors [C,H,W] and [B,C,H,W] mixed with images keep input order', async () => {
    const per = 28 * 28;
    const one = new Tensor('F32', [1, 28, 28], images.data.slice(5 * per, 6 * per));
    const three = new Tensor('F32', [3, 1, 28, 28], images.data.slice(10 * per, 13 * per));
    const out = await model.classify([data.pngs[0]!, one, three, data.pngs[1]!], { topk: 1 });
    assert.deepEqual(out.map((p) => p[0]!.class), [0, 5, 10, 11, 12, 1].map((i) => topK(logits.data, 10, i, 1)[0]));
    const single = await model.classify(data.pngs[7]!);
    assert.equal(single.length, 1);
    assert.equal(single[0]!.length, 5); // default topk
    assert.equal((await model.classify(data.pngs[7]!, { topk: 50 }))[0]!.length, 10); // capped at the class count
  });

  test('concurrent callers each get their own answers', async () => {
    const out = await Promise.all(data.pngs.slice(0, 32).map((png) => model.classify(png, { topk: 1 })));
    out.forEach((p, i) => assert.equal(p[0]![0]!.class, topK(logits.data, 10, i, 1)[0], `caller ${i}`));
  });

  test('never blocks the event loop for long', async () => {
    const h = monitorEventLoopDelay({ resolution: 5 });
    h.enable();
    const many = Array.from({ length: 4 }, () => data.pngs).flat();
    const t0 = performance.now();
    await model.classify(many);
    const ms = performance.now() - t0;
    h.disable();
    const maxMs = h.max / 1e6;
    // The forward runs in the worker and decoding on libuv's pool: the loop only copies and sorts.
    assert.ok(maxMs < Math.max(100, ms / 2), `event loop stalled ${maxMs.toFixed(1)} ms during a ${ms.toFixed(0)} ms classify`);
  });

  test('bad inputs: DataError / InputError, one line, nothing runs', async () => {
    await assert.rejects(model.classify([data.pngs[0]!, Buffer.from('not an image')]), (e: unknown) => e instanceof DataError && /input 1/.test(e.message));
    await assert.rejects(model.classify(data.pngs[0]!.subarray(0, 60)), DataError);
    await assert.rejects(model.classify(new Tensor('F32', [1, 32, 32])), (e: unknown) => e instanceof InputError && /\[1, 28, 28\]/.test(e.message));
    const nan = new Tensor('F32', [1, 28, 28], new Float32Array(784).fill(0.5));
    nan.data[100] = NaN;
    await assert.rejects(model.classify(nan), (e: unknown) => e instanceof InputError && /non-finite/.test(e.message));
    await assert.rejects(model.classify(new Tensor('I32', [1, 28, 28], new Int32Array(784).fill(3))), InputError);
    await assert.rejects(model.classify([]), InputError);
    await assert.rejects(model.classify(data.pngs[0]!, { topk: 0 }), InputError);
    await assert.rejects(model.classify('shoe.png' as unknown as Uint8Array), InputError);
  });

  test('loading errors and dispose', async () => {
    await assert.rejects(loadModel('/nonexistent/model.safetensors'), ModelLoadError);
    await assert.rejects(loadModel('vim-fmnist', { maxBatch: 0 }), InputError);
    const m = await loadModel('vim-fmnist');
    const pending = assert.rejects(m.classify(data.pngs.slice(0, 8)), EngineError);
    await m.dispose();
    await m.dispose(); // twice is fine
    await pending;
    await assert.rejects(m.classify(data.pngs[0]!), EngineError);
  });
});

describe('loadModel on an official-layout .pth (no conversion)', () => {
  const pth = fixture('vim-ti-d2.pth');
  const ref = fixture('vim-ti-d2.ref.safetensors');
  test('tensors give the reference logits; images get the ImageNet transform', { skip: !pth || !ref ? NO_FIXTURES : false }, async () => {
    const model = await loadModel(pth!);
    try {
      assert.equal(model.info.classes, 1000);
      assert.equal(model.labels, null);
      assert.deepEqual({ size: model.preprocess.size, resize: model.preprocess.resize, channels: model.preprocess.channels }, { size: 224, resize: 256, channels: 3 });
      const r = await readSafetensors(ref!);
      const input = r.tensors.get('input')!.toFloat32();
      const want = r.tensors.get('logits')!.toFloat32();
      const logits = await model.logits(input);
      assert.ok(relativeError(logits.data, want.data) < 1e-4);
      const [first, second] = await model.classify(input, { topk: 2 });
      assert.deepEqual(first!.map((p) => p.class), topK(want.data, 1000, 0, 2));
      assert.deepEqual(second!.map((p) => p.class), topK(want.data, 1000, 1, 2));
      assert.equal(first![0]!.label, null);
      // A 320×240 photo-like JPEG: resized to 256 on the short side, centre-cropped to 224.
      const [fromJpeg] = await model.classify(await smoothJpeg(320, 240), { topk: 1 });
      assert.ok(fromJpeg![0]!.prob > 0 && fromJpeg![0]!.prob <= 1);
    } finally {
      await model.dispose();
    }
  });
});
