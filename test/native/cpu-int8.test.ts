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

  it('causalConv1dSiluQuantizeF32 matches causalConv1dF32 (same SiLU math) and quantizes its output exactly', () => {
    const r = rng(22);
    const B = 2, L = 7, E = 21, K = 4, ldx = 2 * E;
    const x = f32(B * L * ldx, r, -2, 2), w = f32(E * K, r), bias = f32(E, r);
    const invScale = f32(L, r, 20, 60), zero = Int32Array.from({ length: L }, (_, i) => 100 + i);
    for (const reverse of [false, true]) {
      for (const math of ['exact', 'fast'] as const) {
        const out = new Float32Array(B * L * E), q = new Uint8Array(B * L * E), plain = new Float32Array(B * L * E);
        k.causalConv1dSiluQuantizeF32(B, L, E, K, x, ldx, w, bias, reverse, out, E, L, null, invScale, zero, 255, q, E, math);
        k.causalConv1dF32(B, L, E, K, x, ldx, w, bias, reverse, true, plain, E, math);
        assert.deepEqual(out, plain, `${math} reverse=${reverse}`);
        assert.deepEqual(q, requantize(B * L, E, out, E, L, null, invScale, zero, 255, E));
      }
    }
  });

  it('selectiveScanBidirF32 equals two single-direction scans combined; q quantizes y exactly', () => {
    const r = rng(23);
    const B = 1, L = 11, E = 19, N = 16, ldx = 12 + 2 * N;
    const dir = (): ScanDirectionF32 & { delta: Float32Array; lddelta: number } => {
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

  it('selectiveScanBidirF32 with dtProj equals gemmU8S8F32 then the scan, bit for bit; validates dtProj', () => {
    const r = rng(29);
    const B = 2, L = 13, E = 21, N = 16, R = 7, ldx = R + 2 * N, rows = B * L;
    const dir = (): ScanDirectionF32 & { delta: Float32Array; lddelta: number } => {
      const xdbl = f32(rows * ldx, r);
      return {
        u: f32(rows * E, r, -2, 2), ldu: E, delta: new Float32Array(rows * E), lddelta: E,
        A: Float32Array.from({ length: E * N }, (_, i) => -(1 + (i % N)) * r(0.5, 1.5)),
        Bm: xdbl.subarray(R), ldB: ldx, Cm: xdbl.subarray(R + N), ldC: ldx, D: f32(E, r), deltaBias: f32(E, r, -3, -1),
      };
    };
    const dtProj = () => ({
      R, q: u8(rows * (R + 1), r), ldq: R + 1, period: L, aScale: f32(L, r, 0.005, 0.01),
      aZero: Int32Array.from({ length: L }, () => Math.floor(r(0, 256))), qweight: s8(E * R, r), wScale: f32(E, r, 0.005, 0.015),
    });
    const fwd = dir(), bwd = dir();
    const dp = [dtProj(), dtProj()] as const;
    // The unfused path: the INT8 GEMM writes Δ, the scan reads it.
    for (const [d, p] of [[fwd, dp[0]], [bwd, dp[1]]] as const) {
      k.gemmU8S8F32(rows, E, R, p.q, p.ldq, k.packInt8Weights(E, R, p.qweight), p.aScale, p.aZero, p.period, p.wScale, null, false, d.delta, E);
    }
    const z = f32(rows * E, r, -3, 3);
    const quant = { period: L, invScale: f32(L, r, 40, 80), zero: Int32Array.from({ length: L }, () => 128), qmax: 255 };
    const y = new Float32Array(rows * E), q = new Uint8Array(rows * E);
    k.selectiveScanBidirF32({ B, L, E, N, fwd, bwd, z, ldz: E, y, ldy: E, q, ldq: E, quant });
    const strip = ({ delta: _d, lddelta: _l, ...rest }: typeof fwd) => rest;
    const fusedFwd = { ...strip(fwd), dtProj: dp[0] }, fusedBwd = { ...strip(bwd), dtProj: dp[1] };
    const yf = new Float32Array(rows * E), qf = new Uint8Array(rows * E);
    k.selectiveScanBidirF32({ B, L, E, N, fwd: fusedFwd, bwd: fusedBwd, z, ldz: E, y: yf, ldy: E, q: qf, ldq: E, quant });
    assert.deepEqual(new Uint32Array(yf.buffer), new Uint32Array(y.buffer));
    assert.deepEqual(qf, q);
    const yr = new Float32Array(rows * E);
    k.selectiveScanBidirF32Ref({ B, L, E, N, fwd: fusedFwd, bwd: fusedBwd, z, ldz: E, y: yr, ldy: E });
    for (let i = 0; i < y.length; i++) assert.ok(Math.abs(y[i]! - yr[i]!) <= 2e-5 * (1 + Math.abs(yr[i]!)), `y[${i}]`);
    const bad = (p: object) => () => k.selectiveScanBidirF32({ B, L, E, N, fwd: { ...fusedFwd, dtProj: { ...dp[0], ...p } }, bwd: fusedBwd, z, ldz: E, y: yf, ldy: E });
    assert.throws(bad({ R: 0 }), /'fwd\.dtProj\.R' must be an integer in \[1, 512\]/);
    assert.throws(bad({ qweight: new Int8Array(E * R - 1) }), /'fwd\.dtProj\.qweight' has \d+ elements, needs 147/);
    assert.throws(bad({ aZero: Int32Array.from({ length: L }, () => 300) }), /dtProj\.aZero/);
    assert.throws(bad({ ldq: R - 1 }), /row stride of 'dtProj\.q'/);
    assert.throws(bad({ qweight: new Uint8Array(E * R) }), /'fwd\.dtProj\.qweight' must be a Int8Array/);
  });
});

describe('selectiveScanBidirF32 with dtProjF32 (FP32 dt_proj inside the scan)', () => {
  it('matches gemmF32 then the scan and the reference; validates dtProjF32', () => {
    const r = rng(37);
    const B = 2, L = 13, E = 21, N = 16, R = 7, ldx = R + 2 * N, rows = B * L;
    const dir = () => {
      const xdbl = f32(rows * ldx, r);
      return {
        xdbl, weight: f32(E * R, r, -0.5, 0.5),
        args: {
          u: f32(rows * E, r, -2, 2), ldu: E, delta: new Float32Array(rows * E), lddelta: E,
          A: Float32Array.from({ length: E * N }, (_, i) => -(1 + (i % N)) * r(0.5, 1.5)),
          Bm: xdbl.subarray(R), ldB: ldx, Cm: xdbl.subarray(R + N), ldC: ldx, D: f32(E, r), deltaBias: f32(E, r, -3, -1),
        },
      };
    };
    const dirs = [dir(), dir()] as const;
    // The unfused path: the FP32 GEMM writes Δ = x_dbl[:, :R] · wᵀ, the scan reads it.
    for (const d of dirs) k.gemmF32(false, true, rows, E, R, d.xdbl, ldx, d.weight, R, null, false, d.args.delta, E);
    const z = f32(rows * E, r, -3, 3);
    const y = new Float32Array(rows * E);
    k.selectiveScanBidirF32({ B, L, E, N, fwd: dirs[0].args, bwd: dirs[1].args, z, ldz: E, y, ldy: E });
    const fused = dirs.map(({ xdbl, weight, args: { delta: _d, lddelta: _l, ...rest } }) => ({ ...rest, dtProjF32: { R, x: xdbl, ldx, weight } }));
    const yf = new Float32Array(rows * E), yr = new Float32Array(rows * E);
    k.selectiveScanBidirF32({ B, L, E, N, fwd: fused[0]!, bwd: fused[1]!, z, ldz: E, y: yf, ldy: E });
    k.selectiveScanBidirF32Ref({ B, L, E, N, fwd: fused[0]!, bwd: fused[1]!, z, ldz: E, y: yr, ldy: E });
    let changed = false;
    for (let i = 0; i < y.length; i++) {
      assert.ok(Math.abs(yf[i]! - y[i]!) <= 1e-5 * (1 + Math.abs(y[i]!)), `fused vs gemm y[${i}]`);
      assert.ok(Math.abs(yf[i]! - yr[i]!) <= 2e-5 * (1 + Math.abs(yr[i]!)), `fused vs ref y[${i}]`);
      changed ||= yf[i] !== 0;
    }
    assert.ok(changed, 'the scan wrote its output');
    const bad = (p: object, extra: object = {}) => () => k.selectiveScanBidirF32({
      B, L, E, N, fwd: { ...fused[0]!, dtProjF32: { ...fused[0]!.dtProjF32, ...p }, ...extra }, bwd: fused[1]!, z, ldz: E, y: yf, ldy: E,
    });
    assert.throws(bad({ R: 513 }), /'fwd\.dtProjF32\.R' must be an integer in \[1, 512\]/);
    assert.throws(bad({ weight: new Float32Array(E * R - 1) }), /'fwd\.dtProjF32\.weight' has \d+ elements, needs 147/);
    assert.throws(bad({ ldx: R - 1 }), /row stride of 'dtProjF32\.x'/);
    assert.throws(bad({ x: new Float32Array(10) }), /'fwd\.dtProjF32\.x' has 10 elements/);
    assert.throws(bad({}, { dtProj: {} }), /'fwd' has both 'dtProj' and 'dtProjF32'; give one/);
  });
});

describe('CpuExecutor: FP32 dt_proj computed inside the scan', () => {
  it('matches the GEMM path, and the deferred matrix reads as the GEMM output', async () => {
    const { CpuExecutor } = await import('../../lib/runtime/cpu-executor.js');
    const { Tensor } = await import('../../lib/tensor/tensor.js');
    const r = rng(41);
    const B = 2, L = 9, E = 19, N = 16, R = 5, rows = B * L;
    const site = (name: string) => ({
      name, weight: new Tensor('F32', [E, R], f32(E * R, r, -0.5, 0.5)), bias: null, inFeatures: R, outFeatures: E, reversedTokens: false, quant: null,
    });
    const sites = [site('layers.0.mixer.dt_proj'), site('layers.0.mixer.dt_proj_b')];
    const outProj = { ...site('layers.0.mixer.out_proj'), inFeatures: E, outFeatures: R };
    const run = (fuseDtProj: boolean) => {
      const ops = new CpuExecutor({ quantMode: 'off', fuseDtProj });
      const rr = rng(43);
      const dtIn = ops.fromHost(f32(rows * R, rr, -2, 2), rows, R);
      const dir = (delta: ReturnType<typeof ops.alloc>, reverse: boolean) => ({
        u: ops.fromHost(f32(rows * E, rr), rows, E), delta, B: ops.fromHost(f32(rows * N, rr), rows, N),
        C: ops.fromHost(f32(rows * N, rr), rows, N), A: Float32Array.from({ length: E * N }, (_, i) => -(1 + (i % N))),
        D: f32(E, rr), deltaBias: f32(E, rr, -3, -1), reverse,
      });
      const deltas = sites.map((s) => ops.linear({ fp: dtIn }, s));
      const z = ops.fromHost(f32(rows * E, rr, -3, 3), rows, E);
      const y = ops.toHost(ops.bidirectionalScan([dir(deltas[0]!, false), dir(deltas[1]!, true)], z, L, outProj).fp!);
      const want = new Float32Array(rows * E);
      k.gemmF32(false, true, rows, E, R, dtIn.data, R, sites[0]!.weight.data, R, null, false, want, E);
      assert.deepEqual(new Uint32Array(ops.toHost(deltas[0]!).buffer), new Uint32Array(want.buffer), 'deferred Δ reads as the GEMM output');
      ops.endForward();
      return y;
    };
    const fused = run(true), plain = run(false);
    for (let i = 0; i < plain.length; i++) assert.ok(Math.abs(fused[i]! - plain[i]!) <= 1e-5 * (1 + Math.abs(plain[i]!)), `y[${i}]`);
    assert.ok(plain.some((v) => v !== 0));
  });
});

describe('CpuExecutor: INT8 dt_proj computed inside the scan', () => {
  it('gives the bytes of the GEMM path, and the deferred matrix reads as the GEMM output', async () => {
    const { CpuExecutor } = await import('../../lib/runtime/cpu-executor.js');
    const { Tensor } = await import('../../lib/tensor/tensor.js');
    const r = rng(31);
    const B = 2, L = 9, E = 19, N = 16, R = 5, rows = B * L;
    const site = (name: string, reversedTokens: boolean) => ({
      name, weight: new Tensor('F32', [E, R], f32(E * R, r)), bias: null, inFeatures: R, outFeatures: E, reversedTokens,
      quant: {
        wbits: 8, abits: 8, granularity: 'per-token-static' as const, qweight: s8(E * R, r), wscale: f32(E, r, 0.01, 0.02),
        smooth: f32(R, r, 0.5, 2), actScale: f32(L, r, 0.01, 0.02), actZero: Int32Array.from({ length: L }, () => Math.floor(r(0, 256))),
      },
    });
    const sites = [site('layers.0.mixer.dt_proj', false), site('layers.0.mixer.dt_proj_b', true)];
    const ops = new CpuExecutor({ quantMode: 'int8' });
    const dtIn = ops.fromHost(f32(rows * R, r, -2, 2), rows, R);
    const dir = (delta: ReturnType<typeof ops.alloc>, reverse: boolean) => ({
      u: ops.fromHost(f32(rows * E, r), rows, E), delta, B: ops.fromHost(f32(rows * N, r), rows, N), C: ops.fromHost(f32(rows * N, r), rows, N),
      A: Float32Array.from({ length: E * N }, (_, i) => -(1 + (i % N))), D: f32(E, r), deltaBias: f32(E, r, -3, -1), reverse,
    });
    const deferred = sites.map((s) => ops.linear({ fp: dtIn }, s));
    const dirs = [dir(deferred[0]!, false), dir(deferred[1]!, true)] as const;
    const z = ops.fromHost(f32(rows * E, r, -3, 3), rows, E);
    const outProj = site('layers.0.mixer.out_proj', false);
    outProj.quant.smooth = new Float32Array(E).fill(1);
    Object.assign(outProj, { inFeatures: E, outFeatures: R, quant: { ...outProj.quant, qweight: s8(R * E, r), wscale: f32(R, r) } });
    const fused = ops.bidirectionalScan(dirs, z, L, outProj).quantized as { codes: Uint8Array };
    // Reading the deferred matrices runs the GEMM; the scan over those values gives the same bytes.
    const materialized = deferred.map((m) => ops.fromHost(ops.toHost(m), rows, E));
    for (const [m, s] of [[materialized[0]!, sites[0]!], [materialized[1]!, sites[1]!]] as const) {
      const q = s.quant;
      const scale = s.reversedTokens ? q.actScale.slice().reverse() : q.actScale;
      const zero = s.reversedTokens ? q.actZero.slice().reverse() : q.actZero;
      const codes = new Uint8Array(rows * R);
      k.quantizeU8(rows, R, L, dtIn.data, R, Float32Array.from(q.smooth, (v) => 1 / v), Float32Array.from(scale, (v) => 1 / v), zero, 255, codes, R);
      const want = new Float32Array(rows * E);
      k.gemmU8S8F32(rows, E, R, codes, R, k.packInt8Weights(E, R, q.qweight), scale, zero, L, q.wscale, null, false, want, E);
      assert.deepEqual(new Uint32Array(ops.toHost(m).buffer), new Uint32Array(want.buffer));
    }
    const plain = ops.bidirectionalScan([{ ...dirs[0], delta: materialized[0]! }, { ...dirs[1], delta: materialized[1]! }], z, L, outProj)
      .quantized as { codes: Uint8Array };
    assert.deepEqual(fused.codes, plain.codes);
    ops.endForward();
  });
});

describe('selectiveScanF32 with dtProj / dtProjF32 (dt_proj inside the single-direction scan of the other backbones)', () => {
  it('INT8 equals gemmU8S8F32 then the scan bit for bit, FP32 gemmF32 then the scan to rounding; both directions, gated or not; validates', () => {
    const r = rng(47);
    const B = 2, L = 13, E = 21, N = 16, R = 7, ldx = R + 2 * N, rows = B * L;
    const xdbl = f32(rows * ldx, r);
    const common = {
      B, L, E, N, u: f32(rows * E, r, -2, 2), ldu: E, A: Float32Array.from({ length: E * N }, (_, i) => -(1 + (i % N)) * r(0.5, 1.5)),
      Bm: xdbl.subarray(R), ldB: ldx, Cm: xdbl.subarray(R + N), ldC: ldx, D: f32(E, r), deltaBias: f32(E, r, -3, -1), ldy: E,
    };
    const z = f32(rows * E, r, -3, 3);
    const dtProj = {
      R, q: u8(rows * (R + 1), r), ldq: R + 1, period: L, aScale: f32(L, r, 0.005, 0.01),
      aZero: Int32Array.from({ length: L }, () => Math.floor(r(0, 256))), qweight: s8(E * R, r), wScale: f32(E, r, 0.005, 0.015),
    };
    const dtProjF32 = { R, x: xdbl, ldx, weight: f32(E * R, r, -0.5, 0.5) };
    const deltaInt8 = new Float32Array(rows * E), deltaF32 = new Float32Array(rows * E);
    k.gemmU8S8F32(rows, E, R, dtProj.q, dtProj.ldq, k.packInt8Weights(E, R, dtProj.qweight), dtProj.aScale, dtProj.aZero, L, dtProj.wScale, null, false, deltaInt8, E);
    k.gemmF32(false, true, rows, E, R, xdbl, ldx, dtProjF32.weight, R, null, false, deltaF32, E);
    for (const reverse of [false, true]) {
      for (const gate of [{}, { z, ldz: E }]) {
        const opts = { ...common, ...gate, reverse, math: 'fast' as const };
        const y = new Float32Array(rows * E), yf = new Float32Array(rows * E);
        k.selectiveScanF32({ ...opts, delta: deltaInt8, lddelta: E, y });
        k.selectiveScanF32({ ...opts, dtProj, y: yf });
        assert.deepEqual(new Uint32Array(yf.buffer), new Uint32Array(y.buffer), `INT8 reverse=${reverse}`);
        assert.ok(y.some((v) => v !== 0));
        const y32 = new Float32Array(rows * E), y32f = new Float32Array(rows * E), yr = new Float32Array(rows * E);
        k.selectiveScanF32({ ...opts, math: 'exact', delta: deltaF32, lddelta: E, y: y32 });
        k.selectiveScanF32({ ...opts, math: 'exact', dtProjF32, y: y32f });
        k.selectiveScanF32Ref({ ...opts, dtProjF32, y: yr });
        for (let i = 0; i < y32.length; i++) {
          assert.ok(Math.abs(y32f[i]! - y32[i]!) <= 1e-5 * (1 + Math.abs(y32[i]!)), `FP32 fused vs gemm y[${i}]`);
          assert.ok(Math.abs(y32f[i]! - yr[i]!) <= 2e-5 * (1 + Math.abs(yr[i]!)), `FP32 fused vs ref y[${i}]`);
        }
      }
    }
    const y = new Float32Array(rows * E);
    const bad = (extra: object) => () => k.selectiveScanF32({ ...common, y, ...extra } as Parameters<typeof k.selectiveScanF32>[0]);
    assert.throws(bad({ dtProj, dtProjF32 }), /selectiveScanF32: the options has both 'dtProj' and 'dtProjF32'; give one/);
    assert.throws(bad({ dtProj: { ...dtProj, R: 0 } }), /'dtProj\.R' must be an integer in \[1, 512\]/);
    assert.throws(bad({ dtProj: { ...dtProj, aZero: Int32Array.from({ length: L }, () => -1) } }), /dtProj\.aZero/);
    assert.throws(bad({ dtProjF32: { ...dtProjF32, weight: new Float32Array(E * R - 1) } }), /'dtProjF32\.weight' has \d+ elements, needs 147/);
    const xOwn = f32(rows * ldx, r);
    assert.throws(bad({ dtProjF32: { ...dtProjF32, x: xOwn }, y: xOwn.subarray(0, rows * E) }), /'y' must not overlap 'dtProjF32\.x'/);
    assert.throws(bad({}), /'lddelta' must be an integer/); // without dt_proj, Δ must be given
  });

  it('CpuExecutor computes the backbones\' dt_proj in their scans: INT8 logits equal the GEMM path\'s bit for bit, FP32 to rounding', async (t) => {
    const { CpuExecutor } = await import('../../lib/runtime/cpu-executor.js');
    const { backboneForward } = await import('../../lib/models/common/forward.js');
    const { loadAnyModel } = await import('../../lib/models/load.js');
    const { calibrate } = await import('../../lib/quant/calibrate.js');
    const { syntheticImages } = await import('../../lib/models/common/random.js');
    const { fixture, NO_FIXTURES } = await import('../helpers.js');
    for (const [name, H, W] of [['local_vim_small_112pad', 112, 112], ['vmamba_v2v_small', 64, 80], ['local_vssm_small', 56, 56]] as const) {
      const path = fixture(`backbones/${name}.safetensors`);
      if (!path) return t.skip(NO_FIXTURES);
      const model = await loadAnyModel(path);
      const images = syntheticImages(2, 3, H, W, 5);
      const logits = (quantMode: 'off' | 'int8', fuseDtProj: boolean) => {
        const ops = new CpuExecutor({ quantMode, fuseDtProj });
        let gemms = 0;
        const k0 = (ops as unknown as { k: Record<string, (...a: unknown[]) => unknown> }).k;
        const f = quantMode === 'off' ? 'gemmF32' : 'gemmU8S8F32';
        const orig = k0[f]!;
        k0[f] = (...a: unknown[]) => { gemms++; return orig(...a); };
        try {
          return { y: ops.toHost(backboneForward(ops as never, model as never, images)), gemms };
        } finally {
          k0[f] = orig;
          ops.endForward();
        }
      };
      const fp = [logits('off', true), logits('off', false)];
      assert.ok(fp[0]!.gemms < fp[1]!.gemms, `${name}: fewer FP32 GEMMs fused (${fp[0]!.gemms} vs ${fp[1]!.gemms})`);
      for (let i = 0; i < fp[1]!.y.length; i++) assert.ok(Math.abs(fp[0]!.y[i]! - fp[1]!.y[i]!) <= 1e-5 * (1 + Math.abs(fp[1]!.y[i]!)), `${name} fp32 [${i}]`);
      calibrate(model, images, { method: 'rtn', wbits: 8, abits: 8, granularity: 'per-token-static', seed: 0 });
      const q = [logits('int8', true), logits('int8', false)];
      assert.ok(q[0]!.gemms < q[1]!.gemms, `${name}: fewer INT8 GEMMs fused (${q[0]!.gemms} vs ${q[1]!.gemms})`);
      assert.deepEqual(q[0]!.y, q[1]!.y, `${name}: INT8 logits`);
    }
  });
});
