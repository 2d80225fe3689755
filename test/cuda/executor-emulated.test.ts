/**
 * The CUDA executor on the CPU emulation of the CUDA binding (emulated-kernels.ts): the graph
 * orchestration of every precision — views, strides, the backward branch's reversed order,
 * fused quantization for the right consumer, recording and graph replay — checked against the
 * PyTorch reference and the CPU executor on machines without a GPU. The same executor runs on
 * the real kernels in gpu-fixtures.test.ts.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { readSafetensors } from '../../lib/io/safetensors.js';
import { loadVimModel } from '../../lib/models/load.js';
import { vimForward } from '../../lib/models/vim/graph.js';
import type { VimModel } from '../../lib/models/vim/model.js';
import { quantizeForSpeed, randomImages, randomVimModel } from '../../lib/models/vim/random.js';
import type { LinearSite } from '../../lib/models/ops.js';
import { CpuExecutor, type CpuMat } from '../../lib/runtime/cpu-executor.js';
import { CudaExecutor, type CudaExecutorOptions, type CudaMat } from '../../lib/runtime/cuda-executor.js';
import type { Tensor } from '../../lib/tensor/tensor.js';
import { fixture, flipTokens, NO_FIXTURES, relativeError } from '../helpers.js';
import { emulatedCudaKernels } from './emulated-kernels.js';

function runForward(ops: CudaExecutor, model: VimModel, images: Tensor<'F32'>): Float32Array {
  try {
    return ops.toHost(vimForward(ops, model, images));
  } finally {
    ops.endForward();
  }
}

function cpuForward(model: VimModel, images: Tensor<'F32'>, quantMode: 'off' | 'fake'): Float32Array {
  const ops = new CpuExecutor({ quantMode });
  try {
    return ops.toHost(vimForward(ops, model, images));
  } finally {
    ops.endForward();
  }
}

function argmaxRows(x: Float32Array, cols: number): number[] {
  const out: number[] = [];
  for (let r = 0; r < x.length / cols; r++) {
    let best = 0;
    for (let j = 1; j < cols; j++) if (x[r * cols + j]! > x[r * cols + best]!) best = j;
    out.push(best);
  }
  return out;
}

const emulated = (model: VimModel, opts: CudaExecutorOptions) => new CudaExecutor(model, { ...opts, kernels: emulatedCudaKernels() });

// fp32 must match the reference like the CPU executor (1e-4); fp16 stores activations in
// fp16 (2^-11 relative per rounding) through the blocks, so 1e-2 on logits and taps.
for (const [name, precision, tol] of [['vim-ti-d2', 'fp32', 1e-4], ['vim-s-d1-stride8', 'fp32', 1e-4], ['vim-ti-d2', 'fp16', 1e-2]] as const) {
  test(`CUDA executor (emulated) ${precision}: ${name} logits and every tap match the PyTorch reference within ${tol}`, async (t) => {
    const modelPath = fixture(`${name}.safetensors`);
    const refPath = fixture(`${name}.ref.safetensors`);
    if (!modelPath || !refPath) return t.skip(NO_FIXTURES);
    const model = await loadVimModel(modelPath);
    const ref = (await readSafetensors(refPath)).tensors;
    const input = ref.get('input') as Tensor<'F32'>;
    const B = input.dim(0);
    const L = model.dims.seqLen;
    const ops = emulated(model, { precision });
    const taps = new Map<string, Float32Array>();
    const logits = ops.toHost(vimForward(ops, model, input, (tapName: string, m: CudaMat) => taps.set(tapName, ops.toHost(m))));
    ops.endForward();
    const err = relativeError(logits, ref.get('logits')!.data as Float32Array);
    t.diagnostic(`logits relative error ${err.toExponential(2)}`);
    assert.ok(err < tol, `logits relative error ${err}`);
    let compared = 0;
    for (const [key, value] of ref) {
      if (!key.startsWith('tap.')) continue;
      const tapName = key.slice(4);
      const got = taps.get(tapName);
      assert.ok(got, `the graph produced no tap ${tapName}`);
      const mine = /_b\./.test(tapName) ? flipTokens(got, B, L, value.dim(2)) : got;
      const e = relativeError(mine, value.data as Float32Array);
      assert.ok(e < tol, `${tapName}: relative error ${e}`);
      compared++;
    }
    assert.equal(compared, model.config.depth * 7);
    ops.dispose();
  });
}

/**
 * Makes every site's activation step sizes differ from every other site's, and from token to
 * token, by up to 3×, so that quantizing with another linear's parameters or in the wrong
 * token order changes the result visibly (both executors use the same, still valid, parameters).
 */
function distinctScales(model: VimModel): void {
  let i = 0;
  for (const site of model.allLinears()) {
    const q = site.quant!;
    const scale = q.actScale.slice();
    for (let t = 0; t < scale.length; t++) scale[t] = scale[t]! * (1 + ((t * 7 + i * 3) % 5) * 0.5);
    site.quant = { ...q, actScale: scale };
    i++;
  }
}

test('CUDA executor (emulated) int8 on a quantized vim-ti-d2 agrees with the CPU simulation (fake-quant)', async (t) => {
  const modelPath = fixture('vim-ti-d2.safetensors');
  if (!modelPath) return t.skip(NO_FIXTURES);
  const model = quantizeForSpeed(await loadVimModel(modelPath), 8, 8);
  const images = randomImages(model, 2, 7);
  const fake = cpuForward(model, images, 'fake');
  const fp = cpuForward(model, images, 'off');
  const C = model.config.num_classes;
  const results: Record<string, number> = {};
  for (const scan of ['fp', 'quantized'] as const) {
    const ops = emulated(model, { precision: 'int8', scan });
    const logits = runForward(ops, model, images);
    ops.dispose();
    results[scan] = relativeError(logits, fake);
    t.diagnostic(`scan ${scan}: relative error vs fake-quant ${results[scan]!.toExponential(2)}, vs fp32 ${relativeError(logits, fp).toExponential(2)}`);
    assert.ok(logits.every(Number.isFinite), 'finite logits');
    // Real INT8 differs from the simulation only by fp16 storage of activations between ops
    // (and, with the quantized scan, by the scan reading the u8 codes).
    assert.ok(results[scan]! < (scan === 'fp' ? 2e-2 : 6e-2), `scan ${scan}: relative error ${results[scan]}`);
    if (scan === 'fp') assert.deepEqual(argmaxRows(logits, C), argmaxRows(fake, C));
  }
  // The quantization is really applied: int8 differs from fp32 by more than fp16 rounding.
  assert.ok(relativeError(fake, fp) > 1e-3, 'the fake-quant model differs from fp32');
});

// A small random Vim-Ti (2 blocks, 80² images: L = 26 tokens) keeps the emulation quick.
const smallVim = () => randomVimModel('vim-ti', 3, { depth: 2, imgSize: 80, numClasses: 10 });

test('CUDA executor (emulated) int8: every fused quantization uses its own linear\'s parameters in that linear\'s token order', async (t) => {
  const modelPath = fixture('vim-ti-d2.safetensors');
  if (!modelPath) return t.skip(NO_FIXTURES);
  const model = quantizeForSpeed(await loadVimModel(modelPath), 8, 8);
  distinctScales(model);
  const images = randomImages(model, 2, 11);
  const L = model.dims.seqLen;
  const cpu = new CpuExecutor({ quantMode: 'fake' });
  const cpuTaps = new Map<string, Float32Array>();
  cpu.toHost(vimForward(cpu, model, images, (n: string, m: CpuMat) => cpuTaps.set(n, cpu.toHost(m))));
  cpu.endForward();
  const kernels = emulatedCudaKernels();
  const ops = new CudaExecutor(model, { precision: 'int8', scan: 'quantized', kernels });
  const ctx = (ops as unknown as { ctx: never }).ctx;
  /** The raw codes of a u8 view, dequantized here with `site`'s own parameters; rows in token order. */
  const dequantWith = (m: CudaMat, site: LinearSite): Float32Array => {
    const codes = kernels.cudaDownload(ctx, m.buf.h, m.offset, m.rows, m.cols, m.ld) as Uint8Array;
    const q = site.quant!;
    const out = new Float32Array(m.rows * m.cols);
    for (let r = 0; r < m.rows; r++) {
      const p = r % q.actScale.length; // the view's own row order is the site's token order
      const token = m.reversedL ? Math.floor(r / L) * L + (L - 1 - (r % L)) : r;
      for (let j = 0; j < m.cols; j++) out[token * m.cols + j] = (codes[r * m.cols + j]! - q.actZero[p]!) * q.actScale[p]! * q.smooth[j]!;
    }
    return out;
  };
  /**
   * max over elements of (|a − clamp(b)| − relSlack·|b|) / step, with the step and range of each
   * element's token at `site` (relSlack covers b's own fp16 rounding).
   */
  const inSteps = (a: Float32Array, b: Float32Array, site: LinearSite, cols: number, relSlack = 0): number => {
    const q = site.quant!;
    let worst = 0;
    for (let i = 0; i < a.length; i++) {
      const token = Math.floor(i / cols) % L;
      const p = site.reversedTokens ? L - 1 - token : token;
      const step = q.actScale[p]! * q.smooth[i % cols]!;
      const want = Math.min(Math.max(b[i]!, -q.actZero[p]! * step), (255 - q.actZero[p]!) * step);
      worst = Math.max(worst, (Math.abs(a[i]! - want) - relSlack * Math.abs(b[i]!)) / step);
    }
    return worst;
  };
  const checked: string[] = [];
  const logits = ops.toHost(vimForward(ops, model, images, (name: string, m: CudaMat) => {
    const layer = model.layers[Number(name.split('.')[1])]!;
    const b = name.includes('_b.') ? layer.bwd : layer.fwd;
    if (/x_proj(_b)?\.in$/.test(name) && layer.index === 0) {
      // the u8 conv output vs the CPU's fp32 conv output: within a step and a half (f16 in between)
      const e = inSteps(dequantWith(m, b.xProj), cpuTaps.get(name)!, b.xProj, m.cols);
      assert.ok(e <= 1.5, `${name}: ${e.toFixed(2)} steps from the CPU's conv output`);
      checked.push(name);
    } else if (/dt_proj(_b)?\.in$/.test(name)) {
      // x_proj's epilogue quantized its first dt_rank columns for dt_proj: within half a step of its own output (+ fp16)
      assert.ok(m.prefix && m.prefix.site === b.dtProj, `${name}: x_proj's output carries dt_proj's codes`);
      const fp = ops.toHost(m);
      const e = inSteps(dequantWith(m.prefix.mat, b.dtProj), fp, b.dtProj, m.cols, 2 ** -11);
      assert.ok(e <= 0.5 + 1e-3, `${name}: ${e.toFixed(3)} steps from x_proj's output`);
      checked.push(name);
    }
  }));
  ops.endForward();
  ops.dispose();
  assert.ok(logits.every(Number.isFinite));
  assert.deepEqual(checked.sort(), ['layers.0.mixer.dt_proj.in', 'layers.0.mixer.dt_proj_b.in', 'layers.0.mixer.x_proj.in', 'layers.0.mixer.x_proj_b.in',
    'layers.1.mixer.dt_proj.in', 'layers.1.mixer.dt_proj_b.in']);
  // in_proj's and out_proj's inputs (fused into the norm and the scan) are not tapped: every
  // block's output, with the FP scan (what the CPU simulation computes), stays close.
  const fpScan = new CudaExecutor(model, { precision: 'int8', scan: 'fp', kernels });
  const errs: number[] = [];
  fpScan.toHost(vimForward(fpScan, model, images, (name: string, m: CudaMat) => {
    if (/^layers\.\d+\.out$/.test(name)) errs.push(relativeError(fpScan.toHost(m), cpuTaps.get(name)!));
  }));
  fpScan.endForward();
  fpScan.dispose();
  t.diagnostic(`block outputs vs the CPU simulation: ${errs.map((e) => e.toExponential(2)).join(', ')}`);
  assert.equal(errs.length, model.config.depth);
  for (const [i, e] of errs.entries()) assert.ok(e < 4e-2, `block ${i} output: relative error ${e} vs the CPU simulation`);
});

test('CUDA executor (emulated) replay: recorded launches and the CUDA graph reproduce eager forwards exactly', () => {
  for (const precision of ['fp32', 'fp16', 'int8'] as const) {
    const model = smallVim();
    if (precision === 'int8') quantizeForSpeed(model, 8, 8);
    const eager = emulated(model, { precision });
    const kernels = emulatedCudaKernels();
    const replayed = new CudaExecutor(model, { precision, replay: 'graph', kernels });
    // Batch 2 recorded, batch 2 captured and launched as a graph, batch 1 recorded in between
    // (sharing the pooled buffers), then both batch sizes replayed with new images.
    const batches = [2, 2, 1, 2, 1, 2];
    for (const [i, B] of batches.entries()) {
      const images = randomImages(model, B, 100 + i);
      const want = runForward(eager, model, images);
      const got = runForward(replayed, model, images);
      assert.deepEqual(got, want, `${precision}: forward ${i} (batch ${B})`);
    }
    assert.deepEqual(replayed.replayState(), { '2x3x80x80': 'graph', '1x3x80x80': 'graph' });
    // A replayed forward runs its launches without re-running the graph code: no new buffers.
    const before = kernels.counters((replayed as unknown as { ctx: never }).ctx).allocs;
    runForward(replayed, model, randomImages(model, 2, 999));
    assert.equal(kernels.counters((replayed as unknown as { ctx: never }).ctx).allocs, before);
    eager.dispose();
    replayed.dispose();
  }
});

test('CUDA executor (emulated) reads taps only in eager mode and refuses them in a replay', () => {
  const model = smallVim();
  const ops = emulated(model, { precision: 'fp32', replay: 'launches' });
  const images = randomImages(model, 1, 5);
  // A tap during a recorded forward: the result is still right, the recording is discarded.
  const taps: string[] = [];
  const withTaps = ops.toHost(vimForward(ops, model, images, (name: string, m: CudaMat) => {
    taps.push(name);
    ops.toHost(m);
  }));
  ops.endForward();
  assert.ok(taps.length > 0);
  assert.deepEqual(ops.replayState(), {}, 'a forward with taps is not recorded');
  const plain = runForward(ops, model, images);
  assert.deepEqual(withTaps, plain);
  assert.deepEqual(ops.replayState(), { '1x3x80x80': 'launches' });
  // Replayed, only the final output exists: reading an intermediate is refused.
  assert.throws(() => {
    try {
      vimForward(ops, model, images, (_n: string, m: CudaMat) => ops.toHost(m));
    } finally {
      ops.endForward();
    }
  }, /only the final output of a replayed forward/);
  ops.dispose();
});
