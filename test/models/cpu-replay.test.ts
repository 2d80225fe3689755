/**
 * CPU forward replay (CpuReplay 'launches'): after the first forward of a batch shape, ModelRunner
 * replays its recorded kernel calls instead of running the graph. A replayed forward must give
 * the logits the graph gives, bit for bit, for new images of that shape, in every precision and
 * family (a kernel call or activation loop the recording missed would replay stale values);
 * forwards that are not plain (an intermediate read back, host data copied in, images read from
 * elsewhere) are never kept.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { syntheticImages } from '../../lib/models/common/random.js';
import { loadAnyModel, type AnyModel } from '../../lib/models/load.js';
import { vimForward } from '../../lib/models/vim/graph.js';
import { VimModel } from '../../lib/models/vim/model.js';
import { quantizeForSpeed, randomVimModel } from '../../lib/models/vim/random.js';
import { calibrate } from '../../lib/quant/calibrate.js';
import { CpuExecutor } from '../../lib/runtime/cpu-executor.js';
import { ModelRunner, type Precision } from '../../lib/runtime/forward.js';
import type { Tensor } from '../../lib/tensor/tensor.js';
import { fixture, NO_FIXTURES } from '../helpers.js';

function imagesFor(model: AnyModel, n: number, seed: number, H?: number, W?: number): Tensor<'F32'> {
  const c = model.config;
  return syntheticImages(n, c.in_chans, H ?? c.img_size, W ?? c.img_size, seed);
}

/**
 * Runs forwards of two batch shapes through a replaying runner and a non-replaying one (each
 * image set new) and asserts equal logits and that the replaying runner recorded both shapes.
 */
function assertReplayMatches(model: AnyModel, precision: Precision, label: string, H?: number, W?: number): void {
  const replaying = new ModelRunner(model, { precision, cpuReplay: 'launches' });
  const eager = new ModelRunner(model, { precision, cpuReplay: 'off' });
  const ops = replaying.ops as unknown as CpuExecutor;
  let seed = 11;
  let previous: Float32Array | null = null;
  for (const batch of [2, 3]) {
    for (let i = 0; i < 3; i++) {
      const images = imagesFor(model, batch, seed++, H, W);
      const got = replaying.forward(images).data;
      const want = eager.forward(images).data;
      assert.deepEqual(got, want, `${label}: batch ${batch}, forward ${i + 1} (${i === 0 ? 'recorded' : 'replayed'})`);
      assert.ok(got.every(Number.isFinite), label);
      if (previous && previous.length === got.length) assert.notDeepEqual(got, previous, `${label}: new images, new logits`);
      previous = got;
    }
    assert.equal(ops.recordedShapes, batch === 2 ? 1 : 2, `${label}: one recording per batch shape`);
  }
  assert.equal((eager.ops as unknown as CpuExecutor).recordedShapes, 0, `${label}: replay off records nothing`);
}

test('CPU replay: Vim logits equal the graph\'s, bit for bit, in fp32, int8 and fake-quant (static and dynamic activations)', () => {
  const fp = randomVimModel('vim-ti', 3, { depth: 2, imgSize: 32, numClasses: 10 });
  assertReplayMatches(fp, 'fp32', 'vim fp32');
  const speed = quantizeForSpeed(randomVimModel('vim-ti', 3, { depth: 2, imgSize: 32, numClasses: 10 }));
  assertReplayMatches(speed, 'int8', 'vim int8 (per-token static)');
  assertReplayMatches(speed, 'fake-quant', 'vim fake-quant (per-token static)');
  const dynamic = randomVimModel('vim-ti', 4, { depth: 2, imgSize: 32, numClasses: 10 });
  calibrate(dynamic, imagesFor(dynamic, 2, 1), { method: 'rtn', wbits: 8, abits: 8, granularity: 'per-token-dynamic', seed: 0 });
  assertReplayMatches(dynamic, 'int8', 'vim int8 (per-token dynamic)');
  assertReplayMatches(dynamic, 'fake-quant', 'vim fake-quant (per-token dynamic)');
});

const BACKBONE_CASES = [
  { fixture: 'local_vim_small_112pad', H: 112, W: 112 },
  { fixture: 'local_vim_small_midcls_112pad', H: 112, W: 112 },
  { fixture: 'vmamba_v2v_small', H: 64, W: 80 },
  { fixture: 'local_vssm_small', H: 56, W: 56 },
];

test('CPU replay: LocalVim, VMamba and LocalVMamba logits equal the graph\'s, bit for bit, in fp32, int8 and fake-quant', async (t) => {
  for (const c of BACKBONE_CASES) {
    const path = fixture(`backbones/${c.fixture}.safetensors`);
    if (!path) return t.skip(NO_FIXTURES);
    const model = await loadAnyModel(path);
    assert.ok(!(model instanceof VimModel));
    assertReplayMatches(model, 'fp32', `${c.fixture} fp32`, c.H, c.W);
    calibrate(model, imagesFor(model, 2, 1, c.H, c.W), { method: 'rtn', wbits: 8, abits: 8, granularity: 'per-token-static', seed: 0 });
    assertReplayMatches(model, 'int8', `${c.fixture} int8`, c.H, c.W);
    assertReplayMatches(model, 'fake-quant', `${c.fixture} fake-quant`, c.H, c.W);
  }
});

test('CPU replay: a forward that reads an intermediate back, copies host data in or reads other images is not recorded', () => {
  const model = randomVimModel('vim-ti', 5, { depth: 2, imgSize: 32, numClasses: 10 });
  const images = imagesFor(model, 2, 3);
  const other = imagesFor(model, 2, 4);
  const reference = new ModelRunner(model, { cpuReplay: 'off' }).forward(images).data;
  const ops = new CpuExecutor({ quantMode: 'off', replay: 'launches' });
  let taps = 0;
  // Taps read intermediates back (toHost) before the output: never replayed.
  for (let i = 0; i < 2; i++) {
    const before = taps;
    assert.deepEqual(ops.runForward(images, () => {
      const out = vimForward(ops, model, images, (_name, m) => {
        taps++;
        ops.toHost(m);
      });
      return out;
    }), reference);
    assert.ok(taps > before, 'the taps ran (the graph ran, not a replay)');
  }
  assert.equal(ops.recordedShapes, 0, 'reading intermediates back: not recorded');
  // Host data copied in during the forward.
  assert.deepEqual(ops.runForward(images, () => {
    const out = vimForward(ops, model, images);
    ops.fromHost(new Float32Array(4), 2, 2);
    return out;
  }), reference);
  assert.equal(ops.recordedShapes, 0, 'fromHost: not recorded');
  // The graph given other images than runForward's.
  ops.runForward(images, () => vimForward(ops, model, other));
  assert.equal(ops.recordedShapes, 0, 'other images: not recorded');
  // A plain forward is recorded, and the replay follows the images it is given.
  assert.deepEqual(ops.runForward(images, () => vimForward(ops, model, images)), reference);
  assert.equal(ops.recordedShapes, 1);
  let graphRan = false;
  const replayed = ops.runForward(other, () => {
    graphRan = true;
    return vimForward(ops, model, other);
  });
  assert.equal(graphRan, false, 'the second forward of the shape is a replay');
  assert.deepEqual(replayed, new ModelRunner(model, { cpuReplay: 'off' }).forward(other).data);
});
