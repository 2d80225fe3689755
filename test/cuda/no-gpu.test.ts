/**
 * Where there is no usable GPU (CI, this dev machine): the addon's CUDA part still loads,
 * reports 0 devices and why, every CUDA binding refuses with that reason, and asking for
 * --device cuda falls back to the CPU with a message (or fails for fp16, which has no CPU path).
 * On a machine with a GPU these tests skip (the GPU tests run instead).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { addon } from '../../lib/backend/addon.js';
import { cudaAvailability, cudaKernelsOrNull } from '../../lib/backend/cuda-kernels.js';
import { runtimeInfo } from '../../lib/backend/runtime-info.js';
import { randomVimModel } from '../../lib/models/vim/random.js';
import { ModelRunner } from '../../lib/runtime/forward.js';
import { CudaExecutor } from '../../lib/runtime/cuda-executor.js';

const HAS_GPU = cudaAvailability().device !== null;
const SKIP = HAS_GPU ? 'a CUDA device is present (test/cuda/gpu.test.ts covers it)' : false;

test('runtimeInfo reports no CUDA device and the reason', { skip: SKIP }, () => {
  const info = runtimeInfo();
  assert.deepEqual(info.cuda.devices, []);
  assert.equal(typeof info.cuda.reason, 'string');
  assert.ok(info.cuda.reason!.length > 10, `reason: ${info.cuda.reason}`);
  if (info.cuda.built) {
    // The reason is cudaGetDeviceCount's error (no driver, no device, ...).
    assert.match(info.cuda.reason!, /^cuda[A-Za-z]+: /);
    assert.ok(info.cuda.kernelMode === 'fast' || info.cuda.kernelMode === 'simple');
  }
  assert.equal(cudaAvailability().reason, info.cuda.reason);
});

test('every CUDA binding throws a one-line "no CUDA device" error without a GPU', { skip: SKIP }, (t) => {
  if (!cudaKernelsOrNull()) return t.skip('the addon was built without CUDA');
  const a = addon();
  const names = Object.keys(a).filter((n) => n.startsWith('cuda') && n !== 'cudaInfo');
  assert.ok(names.length >= 25, `CUDA bindings: ${names.join(', ')}`);
  for (const name of names) {
    const fn = a[name] as (...args: unknown[]) => unknown;
    assert.throws(() => fn({}, 1, 2, 3), (e: Error) => {
      assert.match(e.message, new RegExp(`^${name}: no CUDA device \\(cuda[A-Za-z]+: .+\\)$`));
      assert.ok(!e.message.includes('\n'));
      return true;
    }, name);
  }
});

test('--device cuda without a GPU: the runner falls back to the CPU with a message; fp16 is an error', { skip: SKIP }, () => {
  const model = randomVimModel('vim-ti', 1, { depth: 1, imgSize: 32, numClasses: 4 });
  const written: string[] = [];
  const write = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((s: string) => {
    written.push(String(s));
    return true;
  }) as typeof process.stderr.write;
  let runner: ModelRunner;
  try {
    runner = new ModelRunner(model, { device: 'cuda', precision: 'fp32' });
  } finally {
    process.stderr.write = write;
  }
  assert.equal(runner.device, 'cpu');
  assert.equal(written.length, 1);
  assert.match(written[0]!, /^ptq4vm: device cuda is not available \(.+\); running on the CPU\n$/);
  assert.throws(() => new ModelRunner(model, { device: 'cuda', precision: 'fp16' }), /fp16 runs on --device cuda only/);
  assert.throws(() => new CudaExecutor(model, { precision: 'fp32' }), /no CUDA device|built without CUDA/);
});
