// The quantized path's scan math (MathMode 'fast', docs/design.md numerics): the binding option,
// the executor's choice of it (quantized modes only, PTQ4VM_EXACT_SCAN=1 forces exact), its
// effect on a quantized model, and ModelRunner's chunked CPU forward (bit-identical logits).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { cpuKernels, type ScanDirectionF32 } from '../../lib/backend/cpu-kernels.js';
import { vimForward } from '../../lib/models/vim/graph.js';
import { quantizeForSpeed, randomImages, randomVimModel } from '../../lib/models/vim/random.js';
import { CpuExecutor, type QuantMode } from '../../lib/runtime/cpu-executor.js';
import { ModelRunner } from '../../lib/runtime/forward.js';
import type { VimModel } from '../../lib/models/vim/model.js';
import { relativeError } from '../helpers.js';

const k = cpuKernels();
/** Whether this machine runs the AVX-512 kernels, the only ones with a distinct fast math. */
const fastMathDiffers = k.runtimeInfo().isa.startsWith('avx512');

function rng(seed: number): (lo?: number, hi?: number) => number {
  let s = seed >>> 0;
  return (lo = -1, hi = 1) => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return lo + (hi - lo) * (((t ^ (t >>> 14)) >>> 0) / 4294967296);
  };
}
const f32 = (n: number, r: ReturnType<typeof rng>, lo = -1, hi = 1): Float32Array => Float32Array.from({ length: n }, () => r(lo, hi));

/** Runs a whole forward of `model` on `ops` and returns the host logits. */
function logitsOf(ops: CpuExecutor, model: VimModel, images: ReturnType<typeof randomImages>): Float32Array {
  try {
    return ops.toHost(vimForward(ops, model, images));
  } finally {
    ops.endForward();
  }
}

const argmaxRows = (x: Float32Array, rows: number): number[] => {
  const cols = x.length / rows;
  return Array.from({ length: rows }, (_, r) => {
    let best = 0;
    for (let j = 1; j < cols; j++) if (x[r * cols + j]! > x[r * cols + best]!) best = j;
    return best;
  });
};

describe('selectiveScanBidirF32 math option', () => {
  it("'fast' stays within its bound of the reference and quantizes its own y exactly; bad values are refused", () => {
    const r = rng(41);
    const B = 2, L = 37, E = 45, N = 16, ldx = 6 + 2 * N, rows = B * L;
    const dir = (): ScanDirectionF32 & { delta: Float32Array; lddelta: number } => {
      const xdbl = f32(rows * ldx, r);
      return {
        u: f32(rows * E, r, -2, 2), ldu: E, delta: f32(rows * E, r, -4, 1), lddelta: E,
        A: Float32Array.from({ length: E * N }, (_, i) => -(1 + (i % N)) * r(0.5, 1.5)),
        Bm: xdbl.subarray(6), ldB: ldx, Cm: xdbl.subarray(6 + N), ldC: ldx, D: f32(E, r), deltaBias: f32(E, r, -3, 0),
      };
    };
    const fwd = dir(), bwd = dir();
    const z = f32(rows * E, r, -3, 3);
    const quant = { period: L, invScale: f32(L, r, 40, 80), zero: Int32Array.from({ length: L }, () => 128), qmax: 255 };
    const run = (math: 'exact' | 'fast' | undefined) => {
      const y = new Float32Array(rows * E), q = new Uint8Array(rows * E);
      k.selectiveScanBidirF32({ B, L, E, N, fwd, bwd, z, ldz: E, y, ldy: E, q, ldq: E, quant, ...(math ? { math } : {}) });
      return { y, q };
    };
    const exact = run('exact'), fast = run('fast');
    assert.deepEqual(run(undefined).y, exact.y, "'exact' is the default");
    const ref = new Float32Array(rows * E);
    k.selectiveScanBidirF32Ref({ B, L, E, N, fwd, bwd, z, ldz: E, y: ref, ldy: E, math: 'fast' });
    let worst = 0, scale = 0;
    for (let i = 0; i < ref.length; i++) {
      worst = Math.max(worst, Math.abs(fast.y[i]! - ref[i]!));
      scale = Math.max(scale, Math.abs(ref[i]!));
    }
    // ≤ 7e-5 per step, grown over at most L steps of a state's memory (scan_bidir.h).
    assert.ok(worst <= 3e-3 * scale, `fast error ${worst / scale} of max |y|`);
    if (fastMathDiffers) assert.notDeepEqual(fast.y, exact.y, 'the fast math is in use on AVX-512');
    else assert.deepEqual(fast.y, exact.y, 'without AVX-512 the fast math is the exact one');
    const requant = new Uint8Array(rows * E);
    k.quantizeU8(rows, E, L, fast.y, E, null, quant.invScale, quant.zero, 255, requant, E);
    assert.deepEqual(fast.q, requant);
    let differing = 0;
    for (let i = 0; i < fast.q.length; i++) {
      assert.ok(Math.abs(fast.q[i]! - exact.q[i]!) <= 1, `byte ${i}`);
      differing += fast.q[i] !== exact.q[i] ? 1 : 0;
    }
    assert.ok(differing <= fast.q.length / 50, `${differing} of ${fast.q.length} bytes differ from the exact scan's`);
    const y = new Float32Array(rows * E);
    assert.throws(() => k.selectiveScanBidirF32({ B, L, E, N, fwd, bwd, z, ldz: E, y, ldy: E, math: 'quick' as 'fast' }),
      /selectiveScanBidirF32: 'math' must be 'exact' \| 'fast'/);
    assert.throws(() => k.selectiveScanBidirF32({ B, L, E, N, fwd, bwd, z, ldz: E, y, ldy: E, math: 1 as unknown as 'fast' }),
      /selectiveScanBidirF32: 'math' must be 'exact' \| 'fast'/);
  });
});

describe('CpuExecutor: the scan math of the quantized path', () => {
  // Vim-Ti's shapes (L = 197, E = 384, N = 16) with 2 blocks, quantized for speed (W8A8 RTN).
  const model = quantizeForSpeed(randomVimModel('vim-ti', 3, { depth: 2, numClasses: 50 }), 8, 8, { seed: 3 });
  const images = randomImages(model, 3, 5);

  it("is 'fast' for int8 and fake-quant, 'exact' for fp32 and with PTQ4VM_EXACT_SCAN=1", () => {
    const mode = (quantMode: QuantMode) => new CpuExecutor({ quantMode }).quantizedMath;
    assert.equal(mode('int8'), 'fast');
    assert.equal(mode('fake'), 'fast');
    assert.equal(mode('off'), 'exact');
    const saved = process.env.PTQ4VM_EXACT_SCAN;
    process.env.PTQ4VM_EXACT_SCAN = '1';
    try {
      assert.equal(mode('int8'), 'exact');
      assert.equal(mode('fake'), 'exact');
    } finally {
      if (saved === undefined) delete process.env.PTQ4VM_EXACT_SCAN;
      else process.env.PTQ4VM_EXACT_SCAN = saved;
    }
    assert.equal(new CpuExecutor({ quantMode: 'int8', quantizedMath: 'exact' }).quantizedMath, 'exact');
  });

  it('leaves FP models exact: an INT8 executor gives the fp32 logits bit for bit', () => {
    const fp = randomVimModel('vim-ti', 3, { depth: 2, numClasses: 50 });
    const a = logitsOf(new CpuExecutor({ quantMode: 'int8' }), fp, images);
    const b = logitsOf(new CpuExecutor({ quantMode: 'off' }), fp, images);
    assert.deepEqual(new Uint32Array(a.buffer), new Uint32Array(b.buffer));
  });

  it('changes the scan output by far less than a quantization step, and the logits by far less than quantization does', () => {
    // The simulation taps the scan's fp32 output (out_proj's input) before quantizing it.
    const scanOutputs = (math: 'exact' | 'fast'): Float32Array[] => {
      const ops = new CpuExecutor({ quantMode: 'fake', quantizedMath: math });
      const taps: Float32Array[] = [];
      try {
        vimForward(ops, model, images, (name, m) => {
          if (name.endsWith('out_proj.in')) taps.push(ops.toHost(m));
        });
      } finally {
        ops.endForward();
      }
      return taps;
    };
    const exactY = scanOutputs('exact'), fastY = scanOutputs('fast');
    assert.equal(fastY.length, 2);
    // Block 0 (same input both ways): the change, per element, in steps of out_proj's quantizer
    // for that token (σ = 1 here).
    const step = model.linears(0).out_proj.quant!.actScale;
    const L = model.dims.seqLen, E = model.dims.dInner;
    let worst = 0;
    for (let r = 0; r < fastY[0]!.length / E; r++) {
      for (let j = 0; j < E; j++) worst = Math.max(worst, Math.abs(fastY[0]![r * E + j]! - exactY[0]![r * E + j]!) / step[r % L]!);
    }
    assert.ok(worst < 0.05, `block 0: the scan output moved by ${worst} of a quantization step`);
    if (fastMathDiffers) assert.ok(worst > 0, 'the fast math is in use on AVX-512');
    assert.ok(relativeError(fastY[0]!, exactY[0]!) < 1e-4);
    const fp32 = logitsOf(new CpuExecutor({ quantMode: 'off' }), model, images);
    const int8Fast = logitsOf(new CpuExecutor({ quantMode: 'int8' }), model, images);
    const fakeFast = logitsOf(new CpuExecutor({ quantMode: 'fake' }), model, images);
    const int8Exact = logitsOf(new CpuExecutor({ quantMode: 'int8', quantizedMath: 'exact' }), model, images);
    const quantErr = relativeError(int8Exact, fp32);
    const scanErr = relativeError(int8Fast, int8Exact);
    const simErr = relativeError(int8Fast, fakeFast);
    assert.ok(quantErr > 0, 'quantization changes the logits');
    assert.ok(scanErr < quantErr / 10, `fast-scan change ${scanErr} vs quantization error ${quantErr}`);
    assert.ok(simErr < quantErr / 10, `int8 vs fake-quant ${simErr} vs quantization error ${quantErr}`);
    assert.deepEqual(argmaxRows(int8Fast, 3), argmaxRows(fakeFast, 3));
  });

  it('ModelRunner.forward runs a batch in chunks of images with logits bit-identical to one forward', () => {
    // Chunks of about 16 Vim-Ti images (CPU_CHUNK_ELEMENTS): 17 images run as 16 + 1.
    const batch = randomImages(model, 17, 6);
    for (const precision of ['fp32', 'int8', 'fake-quant'] as const) {
      const runner = new ModelRunner(model, { device: 'cpu', precision });
      const ops = runner.ops as unknown as CpuExecutor;
      const whole = logitsOf(ops, model, batch);
      // Each chunk ends with one endForward.
      let forwards = 0;
      const end = ops.endForward.bind(ops);
      ops.endForward = () => {
        forwards++;
        end();
      };
      const chunked = runner.forward(batch);
      assert.ok(forwards > 1, `17 Vim-Ti images ran as ${forwards} forward(s)`);
      assert.deepEqual(chunked.shape, [17, 50]);
      assert.deepEqual(new Uint32Array(chunked.data.buffer), new Uint32Array(whole.buffer), precision);
    }
  });
});
