/**
 * The CUDA binding and executor on a real GPU. Skips (loudly, with the reason) without one.
 *  1. the binding: transfers, f16 rounding, every validation error;
 *  2. every op the executor uses, on the device and on the CPU emulation (emulated-kernels.ts)
 *     with the same ragged inputs: this pins the argument wiring of each binding;
 *  3. the fixtures through the executor: fp32 ≤ 1e-4 of the PyTorch reference, fp16 ≤ 1e-2,
 *     int8 against the emulation and the CPU simulation;
 *  4. ModelRunner on cuda (graph replay) against eager forwards, with no cudaMalloc in steady state;
 *  5. the calibrated vim-fmnist W8A8 (PTQ4VM_FMNIST_W8A8): top-1 of the fused quantized scan
 *     vs the FP scan on the whole test set.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { existsSync } from 'node:fs';
import {
  cudaAvailability, cudaKernels, type AnyCudaHandle, type CudaBufferHandle, type CudaDType, type CudaKernels,
} from '../../lib/backend/cuda-kernels.js';
import { readSafetensors } from '../../lib/io/safetensors.js';
import { loadVimModel } from '../../lib/models/load.js';
import { vimForward } from '../../lib/models/vim/graph.js';
import type { VimModel } from '../../lib/models/vim/model.js';
import { quantizeForSpeed, randomImages, randomVimModel } from '../../lib/models/vim/random.js';
import { CpuExecutor } from '../../lib/runtime/cpu-executor.js';
import { CudaExecutor, type CudaExecutorOptions, type CudaMat } from '../../lib/runtime/cuda-executor.js';
import { ModelRunner } from '../../lib/runtime/forward.js';
import type { Tensor } from '../../lib/tensor/tensor.js';
import { fixture, flipTokens, NO_FIXTURES, relativeError } from '../helpers.js';
import { emulatedCudaKernels, roundF16 } from './emulated-kernels.js';
import { agreement, fmnistTop1 } from './fmnist.js';

// PTQ4VM_TEST_EMULATE_GPU=1 runs this file against the CPU emulation instead (to check the
// tests themselves on a machine without a GPU; the device-only parts are then skipped).
const EMULATE = process.env.PTQ4VM_TEST_EMULATE_GPU === '1';
const avail = cudaAvailability();
const SKIP = avail.device || EMULATE ? false : `no CUDA device: ${avail.reason}`;
if (SKIP) process.stderr.write(`# test/cuda/gpu.test: SKIPPED, ${SKIP}\n`);
const gpuKernels = (): CudaKernels => (EMULATE ? emulatedCudaKernels() : cudaKernels());

function rand(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = lo + ((s >>> 0) / 4294967296) * (hi - lo);
  }
  return out;
}
const randU8 = (n: number, seed: number) => Uint8Array.from(rand(n, seed, 0, 255.99), Math.floor);
const randI8 = (n: number, seed: number, lim = 127) => Int8Array.from(rand(n, seed, -lim, lim + 0.99), Math.floor);

test('binding: transfers round-trip, f16 rounds to nearest even, and bad arguments fail with one-line errors', { skip: SKIP }, () => {
  const k = gpuKernels();
  const ctx = k.cudaCreateContext(0);
  const other = k.cudaCreateContext(0);
  const x = rand(37, 1, -100, 100);
  const b = k.cudaAlloc(ctx, 'f32', 37, false);
  k.cudaUpload(ctx, b, 0, x);
  assert.deepEqual(k.cudaDownload(ctx, b, 0, 1, 37, 37), x);
  // Strided read: rows 3 × cols 4 from offset 2 with ld 11.
  const strided = k.cudaDownload(ctx, b, 2, 3, 4, 11) as Float32Array;
  for (let r = 0; r < 3; r++) for (let j = 0; j < 4; j++) assert.equal(strided[r * 4 + j], x[2 + r * 11 + j]);
  const h = k.cudaAlloc(ctx, 'f16', 37, false);
  k.cudaUpload(ctx, h, 0, x);
  assert.deepEqual(k.cudaDownload(ctx, h, 0, 1, 37, 37), Float32Array.from(x, roundF16));
  const u = k.cudaAlloc(ctx, 'u8', 10, true);
  k.cudaUpload(ctx, u, 3, new Uint8Array([7, 8, 9]));
  assert.deepEqual(Array.from(k.cudaDownload(ctx, u, 3, 1, 3, 3)), [7, 8, 9]);

  const oneLine = (re: RegExp) => (e: Error) => re.test(e.message) && !e.message.includes('\n');
  assert.throws(() => k.cudaDownload(ctx, b, 30, 1, 8, 8), oneLine(/^cudaDownload: 'buffer' needs 8 elements from offset 30, the buffer has 37$/));
  assert.throws(() => k.cudaDownload(ctx, b, 0, 4, 10, 9), oneLine(/row stride of 'buffer' \(9\) is smaller than its row length \(10\)/));
  assert.throws(() => k.cudaUpload(ctx, b, 0, new Uint8Array(4)), oneLine(/cannot upload this typed array into a f32 buffer/));
  assert.throws(() => k.cudaDownload(other, b, 0, 1, 1, 1), oneLine(/'buffer' belongs to another CUDA context/));
  assert.throws(() => k.cudaConvert(ctx, 1, 4, u, 0, 4, b, 0, 4), oneLine(/'x' is a u8 buffer, expected f32 or f16/));
  assert.throws(() => k.cudaConvert(ctx, 2, 8, b, 0, 8, b, 4, 8), oneLine(/'y' must not overlap 'x'/));
  assert.throws(() => k.cudaGemmF32(ctx, 2, 2, 2, b, 0, 2, b, 0, 2, null, false, u, 0, 2), oneLine(/'C' is a u8 buffer/));
  assert.throws(() => k.cudaDownload(ctx, ctx as unknown as CudaBufferHandle, 0, 1, 1, 1), (e: Error) => e instanceof TypeError && /'buffer' must be a CUDA buffer/.test(e.message));
  assert.throws(() => k.cudaQuantParams(ctx, 2, 255, new Float32Array([1, 0]), new Int32Array([0, 0]), null), oneLine(/scale\[1\] must be positive/));
  const w = k.cudaUploadF16Weights(ctx, 8, 16, rand(128, 3));
  const a16 = k.cudaAlloc(ctx, 'f16', 4 * 16, false);
  const o16 = k.cudaAlloc(ctx, 'f16', 4 * 8, false);
  assert.throws(() => k.cudaGemmF16(ctx, 5, a16, 0, 16, w, null, o16, 0, 8, false, null), oneLine(/'A' needs 80 elements from offset 0, the buffer has 64/));
  assert.throws(() => k.cudaGemmU8S8(ctx, 1, u, 0, 16, w, null as never, b, null, null, 0, 0, false, null, 0, 0, 0, null, null), oneLine(/'weights' must be INT8 weights/));
  k.cudaDispose(b);
  assert.throws(() => k.cudaDownload(ctx, b, 0, 1, 1, 1), oneLine(/'buffer' was disposed/));
  for (const handle of [h, u, w, a16, o16, other, ctx] as AnyCudaHandle[]) k.cudaDispose(handle);
});

/** Runs the same calls on the device and on the emulation; compares what comes back. */
class Dual {
  readonly real: CudaKernels = gpuKernels();
  readonly emu: CudaKernels = emulatedCudaKernels();
  readonly rctx = this.real.cudaCreateContext(0);
  readonly ectx = this.emu.cudaCreateContext(0);
  private readonly pairs = new Map<object, object>();
  private readonly owned: AnyCudaHandle[] = [];

  /** A handle pair; `make` runs once per backend. */
  pair<T extends object>(make: (k: CudaKernels, ctx: never) => T): T {
    const r = make(this.real, this.rctx as never);
    const e = make(this.emu, this.ectx as never);
    this.pairs.set(r, e);
    this.owned.push(r as unknown as AnyCudaHandle);
    return r;
  }
  buf(dtype: CudaDType, data: Float32Array | Uint8Array | Int32Array | number): CudaBufferHandle {
    const n = typeof data === 'number' ? data : data.length;
    return this.pair((k, ctx) => {
      const b = k.cudaAlloc(ctx, dtype, n, false);
      if (typeof data !== 'number') k.cudaUpload(ctx, b, 0, data);
      return b;
    });
  }
  private map(v: unknown, emu: boolean): unknown {
    if (v === this.rctx) return emu ? this.ectx : this.rctx;
    if (v && typeof v === 'object' && this.pairs.has(v)) return emu ? this.pairs.get(v) : v;
    if (v && typeof v === 'object' && !ArrayBuffer.isView(v) && !Array.isArray(v)) {
      return Object.fromEntries(Object.entries(v).map(([key, x]) => [key, this.map(x, emu)]));
    }
    return v;
  }
  call<K extends keyof CudaKernels>(name: K, ...args: unknown[]): void {
    (this.real[name] as (...a: unknown[]) => unknown)(this.rctx, ...args.map((a) => this.map(a, false)));
    (this.emu[name] as (...a: unknown[]) => unknown)(this.ectx, ...args.map((a) => this.map(a, true)));
  }
  /** Both backends' contents of buf (rows × cols, row stride ld). */
  read(buf: CudaBufferHandle, rows: number, cols: number, ld = cols, offset = 0): { real: Float32Array; emu: Float32Array } {
    const r = this.real.cudaDownload(this.rctx, buf, offset, rows, cols, ld);
    const e = this.emu.cudaDownload(this.ectx, this.pairs.get(buf) as CudaBufferHandle, offset, rows, cols, ld);
    return { real: Float32Array.from(r), emu: Float32Array.from(e) };
  }
  dispose(): void {
    for (const h of this.owned) this.real.cudaDispose(h);
    this.real.cudaDispose(this.rctx);
  }
}

/** u8 outputs: rounding boundaries may fall differently (FMA, summation order): ≤ 1 level apart on ≤ 1 % of values. */
function assertCodesClose(got: Float32Array, want: Float32Array, what: string): void {
  let off = 0;
  for (let i = 0; i < got.length; i++) {
    const d = Math.abs(got[i]! - want[i]!);
    assert.ok(d <= 1, `${what}: code ${got[i]} vs ${want[i]} at ${i}`);
    if (d) off++;
  }
  assert.ok(off <= Math.max(2, 0.01 * got.length), `${what}: ${off} of ${got.length} codes off by one`);
}

test('every op the executor uses agrees with the CPU emulation on ragged shapes', { skip: SKIP }, () => {
  const d = new Dual();
  try {
    // Shapes not multiples of any tile: M = 2·37 tokens, K = 72 (in), N = 200 (out), E = 40, N_state = 16.
    const B = 2, L = 37, M = B * L, K = 72, N = 200, E = 40, NS = 16, R = 5;
    const period = L;
    const quant = (cols: number, seed: number, smooth: boolean) => {
      const scale = rand(period, seed, 0.004, 0.02);
      const zero = Int32Array.from(rand(period, seed + 1, 90, 160), Math.floor);
      const sm = smooth ? rand(cols, seed + 2, 0.5, 2) : null;
      return d.pair((k, ctx) => k.cudaQuantParams(ctx, period, 255, scale, zero, sm));
    };
    const qK = quant(K, 10, true);
    const qN = quant(N, 20, true);
    const qE = quant(E, 30, true);
    const qR = quant(R, 40, false);
    // GEMMs
    const a32 = d.buf('f32', rand(M * K, 1));
    const w32 = rand(N * K, 2, -0.1, 0.1);
    const wbuf = d.buf('f32', w32);
    const bias = d.buf('f32', rand(N, 3));
    const c32 = d.buf('f32', M * N);
    d.call('cudaGemmF32', M, N, K, a32, 0, K, wbuf, 0, K, bias, false, c32, 0, N);
    let r = d.read(c32, M, N);
    assert.ok(relativeError(r.real, r.emu) < 1e-5, `gemmF32 ${relativeError(r.real, r.emu)}`);
    const a16 = d.buf('f16', rand(M * 80, 4)); // lda 80: a padded row
    const w16 = d.pair((k, ctx) => k.cudaUploadF16Weights(ctx, N, K, w32));
    const o16 = d.buf('f16', M * N);
    d.call('cudaGemmF16', M, a16, 8, 80, w16, bias, o16, 0, N, false, null);
    r = d.read(o16, M, N);
    assert.ok(relativeError(r.real, r.emu) < 2e-3, `gemmF16 ${relativeError(r.real, r.emu)}`);
    const a8 = d.buf('u8', randU8(M * 80, 5));
    const qw = randI8(N * K, 6);
    const w8 = d.pair((k, ctx) => k.cudaUploadInt8Weights(ctx, N, K, qw));
    const wscale = d.buf('f32', rand(N, 7, 1e-4, 1e-3));
    const o8 = d.buf('f32', M * N);
    const q8 = d.buf('u8', M * 16);
    d.call('cudaGemmU8S8', M, a8, 0, 80, w8, qK, wscale, bias, o8, 0, N, false, q8, 0, 16, R, qR, null);
    r = d.read(o8, M, N);
    assert.ok(relativeError(r.real, r.emu) < 1e-6, `gemmU8S8 fp32 out ${relativeError(r.real, r.emu)}`);
    r = d.read(q8, M, R, 16);
    assertCodesClose(r.real, r.emu, 'gemmU8S8 u8 epilogue');
    // norm + quantize, quantize, dequantize, convert
    const x = d.buf('f32', rand(M * K, 8, -3, 3));
    const resIn = d.buf('f32', rand(M * K, 9));
    const resOut = d.buf('f32', M * K);
    const nw = d.buf('f32', rand(K, 11, 0.5, 1.5));
    const nu8 = d.buf('u8', M * K);
    d.call('cudaAddRmsNorm', M, K, x, 0, resIn, resOut, nw, 1e-5, nu8, 0, qK);
    r = d.read(resOut, M, K);
    assert.ok(relativeError(r.real, r.emu) < 1e-6, 'addRmsNorm residual');
    assertCodesClose(d.read(nu8, M, K).real, d.read(nu8, M, K).emu, 'addRmsNorm u8');
    const nf16 = d.buf('f16', M * K);
    d.call('cudaAddRmsNorm', M, K, x, 0, resIn, resIn, nw, 1e-5, nf16, 0, null); // in place residual
    r = d.read(nf16, M, K);
    assert.ok(relativeError(r.real, r.emu) < 2e-3, `addRmsNorm f16 ${relativeError(r.real, r.emu)}`);
    const qx = d.buf('u8', M * 80);
    d.call('cudaQuantize', M, K, x, 0, K, qK, qx, 0, 80);
    r = d.read(qx, M, K, 80);
    assertCodesClose(r.real, r.emu, 'quantize');
    const dq = d.buf('f32', M * K);
    d.call('cudaDequantize', M, K, qx, 0, 80, qK, dq, 0, K);
    r = d.read(dq, M, K);
    assert.deepEqual(r.real, r.emu);
    // conv (both directions, u8 + f16) and the fused scan, every type combination the executor uses
    const xz = d.buf('f16', rand(M * 2 * E, 12, -2, 2));
    const cw = [d.buf('f32', rand(E * 4, 13)), d.buf('f32', rand(E * 4, 14))];
    const cb = [d.buf('f32', rand(E, 15)), d.buf('f32', rand(E, 16))];
    const cu8 = [d.buf('u8', M * 48), d.buf('u8', M * 48)];
    const cf16 = [d.buf('f16', M * E), d.buf('f16', M * E)];
    const dir = (i: number) => ({ weight: cw[i], bias: cb[i], u8: cu8[i], u8Offset: 0, ldU8: 48, quant: qE, out: cf16[i], outOffset: 0, ldOut: E });
    d.call('cudaBiConv', B, L, E, 4, xz, 0, 2 * E, dir(0), dir(1));
    for (let i = 0; i < 2; i++) {
      r = d.read(cf16[i]!, M, E);
      assert.ok(relativeError(r.real, r.emu) < 2e-3, `biConv f16 dir ${i}: ${relativeError(r.real, r.emu)}`);
      r = d.read(cu8[i]!, M, E, 48);
      assertCodesClose(r.real, r.emu, `biConv u8 dir ${i}`);
    }
    d.call('cudaBiConv', B, L, E, 4, xz, 0, 2 * E, null, { weight: cw[1], bias: cb[1], out: cf16[0], outOffset: 0, ldOut: E });
    r = d.read(cf16[0]!, M, E);
    assert.ok(relativeError(r.real, r.emu) < 2e-3, 'biConv backward only');
    const xd = [d.buf('f16', rand(M * 48, 17, -1, 1)), d.buf('f16', rand(M * 48, 18, -1, 1))];
    const delta = [d.buf('f16', rand(M * E, 19, -3, 0)), d.buf('f16', rand(M * E, 20, -3, 0))];
    const A = [d.buf('f32', rand(E * NS, 21, -8, -0.5)), d.buf('f32', rand(E * NS, 22, -8, -0.5))];
    const dbias = [d.buf('f32', rand(E, 23, -4, -2)), d.buf('f32', rand(E, 24, -4, -2))];
    const Dv = [d.buf('f32', rand(E, 25)), d.buf('f32', rand(E, 26))];
    const scanDir = (i: number, u: CudaBufferHandle, ldu: number) => ({
      u, uOffset: 0, ldu, uQuant: qE, delta: delta[i], deltaOffset: 0, ldDelta: E, deltaBias: dbias[i], A: A[i],
      Bm: xd[i], bOffset: R, ldB: 48, Cm: xd[i], cOffset: R + NS, ldC: 48, D: Dv[i],
    });
    const yu8 = d.buf('u8', M * E);
    const yf16 = d.buf('f16', M * E);
    for (const [name, u0, u1, ldu, y, yQuant] of [
      ['u8 u → u8 y (the INT8 scan)', cu8[0], cu8[1], 48, yu8, qE],
      ['f16 u → u8 y (the FP scan)', cf16[0], cf16[1], E, yu8, qE],
      ['f16 u → f16 y (FP16)', cf16[0], cf16[1], E, yf16, null],
    ] as const) {
      d.call('cudaBiScan', { B, L, E, N: NS, fwd: scanDir(0, u0!, ldu), bwd: scanDir(1, u1!, ldu), z: xz, zOffset: E, ldz: 2 * E,
        deltaSoftplus: true, y, yOffset: 0, ldy: E, yQuant });
      r = d.read(y, M, E);
      if (y === yu8) assertCodesClose(r.real, r.emu, `biScan ${name}`);
      else assert.ok(relativeError(r.real, r.emu) < 3e-3, `biScan ${name}: ${relativeError(r.real, r.emu)}`);
    }
    // patch embedding, token assembly, class-token gather
    const img = d.buf('f32', rand(2 * 3 * 40 * 40, 27));
    const pw = rand(24 * 3 * 8 * 8, 28, -0.1, 0.1);
    const pwb = d.buf('f32', pw);
    const pw16 = d.pair((k, ctx) => k.cudaUploadF16Weights(ctx, 24, 3 * 64, pw));
    const pbias = d.buf('f32', rand(24, 29));
    const patches = d.buf('f32', 2 * 25 * 24);
    d.call('cudaPatchEmbedF32', 2, 3, 40, 40, 8, 8, img, pwb, pbias, 24, patches, 0);
    r = d.read(patches, 50, 24);
    assert.ok(relativeError(r.real, r.emu) < 1e-5, 'patchEmbedF32');
    const patches16 = d.buf('f32', 2 * 25 * 24);
    d.call('cudaPatchEmbedF16', 2, 3, 40, 40, 8, 8, img, pw16, pbias, patches16, 0);
    r = d.read(patches16, 50, 24);
    assert.ok(relativeError(r.real, r.emu) < 2e-3, `patchEmbedF16 ${relativeError(r.real, r.emu)}`);
    // Token assembly only moves and adds: fed the same patches (not the GEMM outputs above, whose
    // float sums differ in the last bits between GPU and emulation), it must agree exactly.
    const samePatches = d.buf('f32', rand(2 * 25 * 24, 32));
    const tokens = d.buf('f32', 2 * 26 * 24);
    d.call('cudaAssembleTokens', 2, 25, 24, samePatches, 0, d.buf('f32', rand(24, 30)), 12, d.buf('f32', rand(26 * 24, 31)), tokens, 0);
    r = d.read(tokens, 52, 24);
    assert.deepEqual(r.real, r.emu);
    const cls = d.buf('f32', 2 * 24);
    d.call('cudaGatherToken', 2, 26, 24, 12, tokens, 0, cls, 0);
    r = d.read(cls, 2, 24);
    assert.deepEqual(r.real, r.emu);
  } finally {
    d.dispose();
  }
});

function runForward(ops: CudaExecutor | CpuExecutor, model: VimModel, images: Tensor<'F32'>): Float32Array {
  try {
    return (ops as CudaExecutor).toHost(vimForward(ops as CudaExecutor, model, images));
  } finally {
    ops.endForward();
  }
}

for (const [name, precision, tol] of [['vim-ti-d2', 'fp32', 1e-4], ['vim-s-d1-stride8', 'fp32', 1e-4], ['vim-ti-d2', 'fp16', 1e-2], ['vim-s-d1-stride8', 'fp16', 1e-2]] as const) {
  test(`GPU ${precision}: ${name} logits and every tap match the PyTorch reference within ${tol}`, { skip: SKIP }, async (t) => {
    const modelPath = fixture(`${name}.safetensors`);
    const refPath = fixture(`${name}.ref.safetensors`);
    if (!modelPath || !refPath) return t.skip(NO_FIXTURES);
    const model = await loadVimModel(modelPath);
    const ref = (await readSafetensors(refPath)).tensors;
    const input = ref.get('input') as Tensor<'F32'>;
    const ops = new CudaExecutor(model, { precision, kernels: gpuKernels() });
    try {
      const taps = new Map<string, Float32Array>();
      const logits = ops.toHost(vimForward(ops, model, input, (tapName: string, m: CudaMat) => taps.set(tapName, ops.toHost(m))));
      ops.endForward();
      const err = relativeError(logits, ref.get('logits')!.data as Float32Array);
      t.diagnostic(`${name} ${precision}: logits relative error ${err.toExponential(2)}`);
      assert.ok(err < tol, `logits relative error ${err}`);
      let worst = 0;
      for (const [key, value] of ref) {
        if (!key.startsWith('tap.')) continue;
        const got = taps.get(key.slice(4));
        if (!got) continue; // taps the reference has but this model's file does not (none expected)
        const mine = /_b\./.test(key) ? flipTokens(got, input.dim(0), model.dims.seqLen, value.dim(2)) : got;
        const e = relativeError(mine, value.data as Float32Array);
        worst = Math.max(worst, e);
        assert.ok(e < tol, `${key}: relative error ${e}`);
      }
      t.diagnostic(`${name} ${precision}: worst tap relative error ${worst.toExponential(2)}`);
    } finally {
      ops.dispose();
    }
  });
}

test('GPU int8 (speed quantization of vim-ti-d2) agrees with the emulation and the CPU simulation', { skip: SKIP }, async (t) => {
  const modelPath = fixture('vim-ti-d2.safetensors');
  if (!modelPath) return t.skip(NO_FIXTURES);
  const model = quantizeForSpeed(await loadVimModel(modelPath), 8, 8);
  const images = randomImages(model, 1, 7); // one image: the emulated INT8 GEMMs are slow
  const fake = runForward(new CpuExecutor({ quantMode: 'fake' }), model, images);
  for (const scan of ['fp', 'quantized'] as const) {
    const opts: CudaExecutorOptions = { precision: 'int8', scan };
    const gpu = new CudaExecutor(model, { ...opts, kernels: gpuKernels() });
    const got = runForward(gpu, model, images);
    gpu.dispose();
    const emu = runForward(new CudaExecutor(model, { ...opts, kernels: emulatedCudaKernels() }), model, images);
    const eEmu = relativeError(got, emu);
    const eFake = relativeError(got, fake);
    t.diagnostic(`int8 scan ${scan}: relative error vs emulation ${eEmu.toExponential(2)}, vs CPU fake-quant ${eFake.toExponential(2)}`);
    assert.ok(eEmu < 1e-2, `vs emulation ${eEmu}`);
    assert.ok(eFake < (scan === 'fp' ? 2e-2 : 6e-2), `vs fake-quant ${eFake}`);
  }
});

test('ModelRunner on cuda: graph replay equals eager forwards; no cudaMalloc in steady state', { skip: SKIP }, () => {
  const model = quantizeForSpeed(randomVimModel('vim-ti', 5, EMULATE ? { depth: 2, imgSize: 64 } : { depth: 4 }), 8, 8);
  const key = (B: number) => `${B}x3x${model.config.img_size}x${model.config.img_size}`;
  for (const precision of ['fp16', 'int8'] as const) {
    const kernels = gpuKernels();
    const runner = EMULATE ? null : new ModelRunner(model, { device: 'cuda', precision, replay: 'graph' });
    const ops = runner ? (runner.ops as unknown as CudaExecutor) : new CudaExecutor(model, { precision, replay: 'graph', kernels });
    const forward = (images: Tensor<'F32'>) => (runner ? runner.forward(images).data : runForward(ops, model, images));
    const eager = new CudaExecutor(model, { precision, replay: 'off', kernels });
    for (const [i, B] of [1, 3, 3, 1, 3, 3, 1].entries()) {
      const images = randomImages(model, B, 50 + i);
      const got = forward(images);
      const want = runForward(eager, model, images);
      assert.ok(relativeError(got, want) < 1e-6, `${precision} forward ${i} (batch ${B}): ${relativeError(got, want)}`);
      if (i === 4) {
        const before = ops.stats().deviceMallocs;
        forward(randomImages(model, 3, 99));
        forward(randomImages(model, 1, 98));
        assert.equal(ops.stats().deviceMallocs, before, 'replayed forwards allocate nothing');
      }
    }
    assert.deepEqual(ops.replayState(), { [key(1)]: 'graph', [key(3)]: 'graph' });
    ops.dispose();
    eager.dispose();
  }
});

test('vim-fmnist W8A8 (PTQ4VM_FMNIST_W8A8): top-1 of the fused quantized scan vs the FP scan on the test set', { skip: SKIP }, async (t) => {
  const path = process.env.PTQ4VM_FMNIST_W8A8;
  if (!path || !existsSync(path)) return t.skip('set PTQ4VM_FMNIST_W8A8 to a calibrated vim-fmnist W8A8 file (scripts/gpu/e2e.sh does)');
  const model = await loadVimModel(path);
  const limit = EMULATE ? 500 : undefined;
  const cpu = await fmnistTop1(new CpuExecutor({ quantMode: 'fake' }), model, limit);
  const cpuFp = await fmnistTop1(new CpuExecutor({ quantMode: 'off' }), model, limit);
  const res: Record<string, { top1: number; agree: number }> = {};
  for (const [label, opts] of [['fp32', { precision: 'fp32' }], ['fp16', { precision: 'fp16' }],
    ['int8 fused quantized scan', { precision: 'int8', scan: 'quantized' }], ['int8 FP scan', { precision: 'int8', scan: 'fp' }]] as const) {
    const ops = new CudaExecutor(model, { ...opts, kernels: gpuKernels() });
    const r = await fmnistTop1(ops as never, model, EMULATE ? 500 : undefined);
    ops.dispose();
    res[label] = { top1: r.top1, agree: agreement(r.preds, opts.precision === 'int8' ? cpu.preds : cpuFp.preds) };
    t.diagnostic(`${label}: top-1 ${(r.top1 * 100).toFixed(2)}% on ${r.n} images, predictions equal to the CPU's ${opts.precision === 'int8' ? 'fake-quant' : 'fp32'} on ${(res[label]!.agree * 100).toFixed(2)}%`);
  }
  t.diagnostic(`CPU: fp32 ${(cpuFp.top1 * 100).toFixed(2)}%, fake-quant W8A8 ${(cpu.top1 * 100).toFixed(2)}%`);
  process.stdout.write(`# ${JSON.stringify({ bench: 'fmnist-scan', cpu_fp32_top1: cpuFp.top1, cpu_fakequant_top1: cpu.top1, ...Object.fromEntries(Object.entries(res).map(([k, v]) => [k.replace(/ /g, '_'), v])) })}\n`);
  assert.ok(res['fp32']!.agree >= 0.999, 'fp32 predictions equal the CPU fp32');
  assert.ok(res['int8 FP scan']!.agree >= 0.99, 'FP-scan INT8 predictions equal the CPU simulation on ≥ 99 %');
  assert.ok(res['int8 fused quantized scan']!.top1 >= cpuFp.top1 - 0.05, 'the quantized scan keeps top-1 within 5 points of fp32');
});
