// The INT8 GEMM and fused quantizing op bindings: integer results against JS, the fused ops'
// bytes against quantizeU8 of their own fp32 outputs, and argument validation.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { cpuKernels, type PackedInt8, type ScanDirectionF32 } from '../../lib/backend/cpu-kernels.js';

const k = cpuKernels();

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
const u8 = (n: number, r: ReturnType<typeof rng>): Uint8Array => Uint8Array.from({ length: n }, () => Math.floor(r(0, 256)));
const s8 = (n: number, r: ReturnType<typeof rng>, level = 127): Int8Array =>
  Int8Array.from({ length: n }, () => Math.floor(r(-level, level + 1)));

describe('INT8 GEMM bindings', () => {
  it('gemmU8S8S32 equals the integer product computed in JS, 8- and 4-bit weights', () => {
    const r = rng(11);
    for (const level of [127, 7]) {
      const M = 13, N = 21, K = 37, lda = K + 3, ldc = N + 1;
      const A = u8(M * lda, r), qw = s8(N * K, r, level);
      const W = k.packInt8Weights(N, K, qw);
      assert.deepEqual(k.packedInt8Shape(W), { N, K });
      const C = new Int32Array(M * ldc).fill(-1);
      k.gemmU8S8S32(M, N, K, A, lda, W, C, ldc);
      for (let m = 0; m < M; m++) {
        for (let n = 0; n < N; n++) {
          let acc = 0;
          for (let j = 0; j < K; j++) acc += A[m * lda + j]! * qw[n * K + j]!;
          assert.equal(C[m * ldc + n], acc, `C[${m},${n}] level ${level}`);
        }
        assert.equal(C[m * ldc + N], -1, 'padding column untouched');
      }
    }
  });

  it('gemmU8S8F32 is bit-identical to its reference and close to the JS epilogue', () => {
    const r = rng(12);
    const M = 19, N = 35, K = 50, period = 7;
    const A = u8(M * K, r), qw = s8(N * K, r);
    const W = k.packInt8Weights(N, K, qw);
    const aScale = f32(period, r, 0.001, 0.02), aZero = Int32Array.from({ length: period }, (_, i) => 10 * i + 3);
    const wScale = f32(N, r, 0.001, 0.01), bias = f32(N, r);
    const C = new Float32Array(M * N), Cref = new Float32Array(M * N);
    k.gemmU8S8F32(M, N, K, A, K, W, aScale, aZero, period, wScale, bias, false, C, N);
    k.gemmU8S8F32Ref(M, N, K, A, K, qw, aScale, aZero, period, wScale, bias, false, Cref, N);
    assert.deepEqual(C, Cref);
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        let acc = 0, wsum = 0;
        for (let j = 0; j < K; j++) {
          acc += A[m * K + j]! * qw[n * K + j]!;
          wsum += qw[n * K + j]!;
        }
        const p = m % period;
        const want = (acc - aZero[p]! * wsum) * aScale[p]! * wScale[n]! + bias[n]!;
        assert.ok(Math.abs(C[m * N + n]! - want) <= 1e-5 * Math.max(1, Math.abs(want)), `C[${m},${n}]`);
      }
    }
  });

  it('rejects foreign handles, mismatched shapes, bad zero points and huge K', () => {
    const W = k.packInt8Weights(4, 8, new Int8Array(32).fill(1));
    const A = new Uint8Array(16), C = new Float32Array(8), one = new Float32Array(4).fill(1), z = new Int32Array(4);
    assert.throws(() => k.gemmU8S8F32(2, 4, 8, A, 8, {} as PackedInt8, one, z, 1, one, null, false, C, 4),
      /gemmU8S8F32: 'W' must be packed INT8 weights/);
    assert.throws(() => k.gemmU8S8F32(2, 4, 7, A, 8, W, one, z, 1, one, null, false, C, 4),
      /the packed weights are 4×8, not N×K = 4×7/);
    assert.throws(() => k.gemmU8S8F32(2, 4, 8, A, 8, W, one, Int32Array.from([256]), 1, one, null, false, C, 4),
      /'aZero'\[0\] = 256 is outside \[0, 255\]/);
    assert.throws(() => k.packInt8Weights(1, 40000, new Int8Array(40000)), /'K' = 40000 is outside \[1, 32768\]/);
    assert.throws(() => k.gemmU8S8S32(2, 4, 8, A, 8, W, new Int32Array(7), 4), /'C' has 7 elements, needs 8/);
  });
});

/** quantizeU8 of rows × cols values (row stride ldv) with the given parameters. */
function requantize(rows: number, cols: number, v: Float32Array, ldv: number, period: number, invSmooth: Float32Array | null,
  invScale: Float32Array, zero: Int32Array, qmax: number, ldq: number): Uint8Array {
  const q = new Uint8Array(rows * ldq);
  k.quantizeU8(rows, cols, period, v, ldv, invSmooth, invScale, zero, qmax, q, ldq);
  return q;
}

describe('fused quantizing op bindings', () => {
  it('addRmsNormQuantizeF32 writes addRmsNormF32 output and exactly its quantization', () => {
    const r = rng(21);
    const rows = 9, D = 40, period = 3;
    const x = f32(rows * D, r, -2, 2), res = f32(rows * D, r), w = f32(D, r, 0.5, 1.5);
    const invSmooth = f32(D, r, 0.5, 2), invScale = Float32Array.from([30, 40, 50]), zero = Int32Array.from([100, 128, 90]);
    const out = new Float32Array(rows * D), ro = new Float32Array(rows * D), q = new Uint8Array(rows * D);
    k.addRmsNormQuantizeF32(rows, D, x, res, ro, w, 1e-5, out, period, invSmooth, invScale, zero, 255, q, D);
    const out2 = new Float32Array(rows * D), ro2 = new Float32Array(rows * D);
    k.addRmsNormF32(rows, D, x, res, ro2, w, 1e-5, out2);
    assert.deepEqual(ro, ro2);
    assert.deepEqual(out, out2);
    assert.deepEqual(q, requantize(rows, D, out, D, period, invSmooth, invScale, zero, 255, D));
    assert.throws(() => k.addRmsNormQuantizeF32(rows, D, x, res, ro, w, 1e-5, null, period, invSmooth, invScale,
      Int32Array.from([0, 300, 0]), 255, q, D), /'zero'\[1\] = 300 is outside \[0, 255\]/);
  });

  it('causalConv1dSiluQuantizeF32 matches causalConv1dF32 and quantizes its output exactly', () => {
    const r = rng(22);
    const B = 2, L = 7, E = 21, K = 4, ldx = 2 * E;
    const x = f32(B * L * ldx, r, -2, 2), w = f32(E * K, r), bias = f32(E, r);
    const invScale = f32(L, r, 20, 60), zero = Int32Array.from({ length: L }, (_, i) => 100 + i);
    for (const reverse of [false, true]) {
      const out = new Float32Array(B * L * E), q = new Uint8Array(B * L * E), plain = new Float32Array(B * L * E);
      k.causalConv1dSiluQuantizeF32(B, L, E, K, x, ldx, w, bias, reverse, out, E, L, null, invScale, zero, 255, q, E);
      k.causalConv1dF32(B, L, E, K, x, ldx, w, bias, reverse, true, plain, E);
      assert.deepEqual(out, plain);
      assert.deepEqual(q, requantize(B * L, E, out, E, L, null, invScale, zero, 255, E));
    }
  });

  it('selectiveScanBidirF32 equals two single-direction scans combined; q quantizes y exactly', () => {
    const r = rng(23);
    const B = 1, L = 11, E = 19, N = 16, ldx = 12 + 2 * N;
    const dir = (): ScanDirectionF32 => {
      const xdbl = f32(L * ldx, r);
      return {
        u: f32(L * E, r, -2, 2), ldu: E, delta: f32(L * E, r, -4, 1), lddelta: E,
        A: Float32Array.from({ length: E * N }, (_, i) => -(1 + (i % N)) * r(0.5, 1.5)),
        Bm: xdbl.subarray(12), ldB: ldx, Cm: xdbl.subarray(12 + N), ldC: ldx, D: f32(E, r), deltaBias: f32(E, r),
      };
    };
    const fwd = dir(), bwd = dir();
    const z = f32(L * E, r, -3, 3);
    const quant = { period: L, invScale: f32(L, r, 40, 80), zero: Int32Array.from({ length: L }, () => 128), qmax: 255 };
    const y = new Float32Array(L * E), q = new Uint8Array(L * E);
    k.selectiveScanBidirF32({ B, L, E, N, fwd, bwd, z, ldz: E, y, ldy: E, q, ldq: E, quant });
    const two = new Float32Array(L * E);
    for (const [d, reverse] of [[fwd, false], [bwd, true]] as const) {
      k.selectiveScanF32({ B, L, E, N, ...d, z, ldz: E, reverse, accumulate: reverse, outScale: 0.5, y: two, ldy: E });
    }
    for (let i = 0; i < y.length; i++) assert.ok(Math.abs(y[i]! - two[i]!) <= 1e-5 * (1 + Math.abs(two[i]!)), `y[${i}]`);
    assert.deepEqual(q, requantize(L, E, y, E, L, null, quant.invScale, quant.zero, 255, E));
    assert.throws(() => k.selectiveScanBidirF32({ B, L, E, N, fwd, bwd, z, ldz: E }), /give 'y', 'q' or both/);
    assert.throws(() => k.selectiveScanBidirF32({ B, L, E, N, fwd, bwd, z, ldz: E, q, ldq: E }),
      /selectiveScanBidirF32: 'quant' must be an object/);
    assert.throws(() => k.selectiveScanBidirF32({ B, L, E, N, fwd: { ...fwd, ldB: 3 }, bwd, z, ldz: E, y, ldy: E }),
      /row stride of 'Bm' \(3\) is smaller than its row length \(16\)/);
    assert.throws(() => k.selectiveScanBidirF32({ B, L, E, N, fwd, bwd: { ...bwd, u: 5 as unknown as Float32Array }, z, ldz: E, y, ldy: E }),
      /selectiveScanBidirF32: 'bwd.u' must be a Float32Array/);
  });
});
