// The FP32 and quantize CPU kernel bindings: results against values computed here in JS
// (float64), and the argument validation every binding must do.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';

import { alignedFloat32Array, alignedUint8Array, cpuKernels } from '../../lib/backend/cpu-kernels.js';
import { CpuExecutor } from '../../lib/runtime/cpu-executor.js';

const k = cpuKernels();

/** Deterministic uniform floats in [lo, hi) (mulberry32). */
function rng(seed: number): (lo?: number, hi?: number) => number {
  let s = seed >>> 0;
  return (lo = -1, hi = 1) => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    const u = ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    return lo + (hi - lo) * u;
  };
}

function randomF32(n: number, r: ReturnType<typeof rng>, lo = -1, hi = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = r(lo, hi);
  return a;
}

function assertClose(got: ArrayLike<number>, want: ArrayLike<number>, tol: number, what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  let scale = 1e-30;
  for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i]!));
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(got[i]! - want[i]!) / scale;
    assert.ok(err <= tol, `${what}[${i}]: got ${got[i]}, want ${want[i]} (rel ${err.toExponential(2)})`);
  }
}

const silu = (v: number): number => v / (1 + Math.exp(-v));

describe('runtime binding', () => {
  const initial = k.runtimeInfo();
  after(() => {
    k.setThreads(initial.threads);
    k.setIsa(initial.isa);
  });

  it('reports the ISA, features and threads', () => {
    const info = k.runtimeInfo();
    assert.ok(['scalar', 'avx2', 'avx512', 'avx512vnni'].includes(info.detectedIsa));
    assert.equal(typeof info.features.avx2, 'boolean');
    assert.ok(info.threads >= 1);
    if (info.detectedIsa !== 'scalar') assert.ok(info.features.avx2 && info.features.fma);
  });

  it('setThreads and setIsa change the runtime and validate their argument', () => {
    assert.equal(k.setThreads(3), 3);
    assert.equal(k.runtimeInfo().threads, 3);
    assert.equal(k.setIsa('scalar'), 'scalar');
    assert.equal(k.runtimeInfo().isa, 'scalar');
    assert.equal(k.setIsa(initial.detectedIsa), initial.detectedIsa);
    assert.throws(() => k.setThreads(0), /setThreads: 'n' = 0 is outside \[1, 1024\]/);
    assert.throws(() => k.setIsa('sse9' as never), /setIsa: unknown ISA 'sse9'/);
  });
});

describe('cache-line aligned buffers', () => {
  it('addressMod64 follows the byte offset of a view and rejects what is not a typed array', () => {
    const base = new Float32Array(1024);
    const m = k.addressMod64(base);
    for (const off of [1, 3, 16, 17]) assert.equal(k.addressMod64(base.subarray(off)), (m + 4 * off) % 64);
    assert.throws(() => k.addressMod64({} as unknown as Float32Array), /addressMod64: 'view' must be a typed array/);
  });

  it('alignedFloat32Array / alignedUint8Array start a cache line, have n zeroed elements', () => {
    for (const n of [1, 15, 16, 1000, 605184]) {
      const f = alignedFloat32Array(n), u = alignedUint8Array(n);
      assert.equal(f.length, n);
      assert.equal(u.length, n);
      assert.equal(k.addressMod64(f), 0, `Float32Array(${n})`);
      assert.equal(k.addressMod64(u), 0, `Uint8Array(${n})`);
      assert.ok(f.every((v) => v === 0) && u.every((v) => v === 0));
    }
  });

  it('CpuExecutor.alloc hands out aligned activation buffers, fresh and reused', () => {
    const ops = new CpuExecutor({ quantMode: 'off' });
    for (let round = 0; round < 2; round++) {
      ops.beginScope();
      for (const [rows, cols] of [[1576, 768], [197, 44], [3, 5]] as const) assert.equal(k.addressMod64(ops.alloc(rows, cols).data), 0);
      ops.endScope([]);
    }
  });
});

describe('gemmF32', () => {
  it('matches a JS product for every transpose case, with bias, accumulate and strides', () => {
    const r = rng(1);
    const M = 5, N = 7, K = 9;
    for (const ta of [false, true]) {
      for (const tb of [false, true]) {
        const lda = (ta ? M : K) + 2, ldb = (tb ? K : N) + 1, ldc = N + 3;
        const A = randomF32((ta ? K : M) * lda, r), B = randomF32((tb ? N : K) * ldb, r);
        const bias = randomF32(N, r), C = randomF32(M * ldc, r);
        const want = Float64Array.from(C);
        for (let i = 0; i < M; i++) {
          for (let j = 0; j < N; j++) {
            let s = 0;
            for (let p = 0; p < K; p++) s += A[ta ? p * lda + i : i * lda + p]! * B[tb ? j * ldb + p : p * ldb + j]!;
            want[i * ldc + j] = C[i * ldc + j]! + s + bias[j]!;
          }
        }
        k.gemmF32(ta, tb, M, N, K, A, lda, B, ldb, bias, true, C, ldc);
        assertClose(C, want, 1e-6, `gemm ta=${ta} tb=${tb}`);
      }
    }
  });

  it('agrees with gemmF32Ref on a ragged shape, operands given as subarray views', () => {
    const r = rng(2);
    const M = 37, N = 45, K = 29;
    const buf = randomF32(10 + M * K, r);
    const A = buf.subarray(10);
    const W = randomF32(N * K, r);
    const C1 = new Float32Array(M * N), C2 = new Float32Array(M * N);
    k.gemmF32(false, true, M, N, K, A, K, W, K, null, false, C1, N);
    k.gemmF32Ref(false, true, M, N, K, A, K, W, K, null, false, C2, N);
    assertClose(C1, C2, 1e-5, 'gemm vs ref');
  });

  it('rejects bad arguments with one-line errors', () => {
    const A = new Float32Array(6), B = new Float32Array(6), C = new Float32Array(4);
    assert.throws(() => (k.gemmF32 as (...a: unknown[]) => void)(false, true, 2, 2, 3), /gemmF32: expected 13 arguments, got 5/);
    assert.throws(() => k.gemmF32(false, true, 2, 2, 3, A, 3, B, 3, null, false, new Float32Array(3), 2),
      /gemmF32: 'C' has 3 elements, needs 4/);
    assert.throws(() => k.gemmF32(false, true, 2, 2, 3, A, 2, B, 3, null, false, C, 2),
      /gemmF32: row stride of 'A' \(2\) is smaller than its row length \(3\)/);
    assert.throws(() => k.gemmF32(false, true, -1, 2, 3, A, 3, B, 3, null, false, C, 2), /'M' = -1 is outside/);
    assert.throws(() => k.gemmF32(false, true, 2.5, 2, 3, A, 3, B, 3, null, false, C, 2), /'M' must be an integer/);
    assert.throws(() => k.gemmF32(false, true, 2, 2, 3, new Float64Array(6) as unknown as Float32Array, 3, B, 3, null, false, C, 2),
      /gemmF32: 'A' must be a Float32Array/);
    assert.throws(() => k.gemmF32(false, true, 2, 2, 3, A, 3, B, 3, new Float32Array(1), false, C, 2), /'bias' has 1 elements, needs 2/);
    assert.throws(() => k.gemmF32(false, true, 2, 2, 3, A, 3, B, 3, null, false, A, 2), /'C' must not overlap 'A'/);
    assert.throws(() => k.gemmF32(false, true, 2 ** 31, 2, 3, A, 3, B, 3, null, false, C, 2), /outside/);
  });
});

describe('addRmsNormF32', () => {
  it('matches JS, in place on the residual', () => {
    const r = rng(3);
    const rows = 3, D = 19;
    const x = randomF32(rows * D, r), res = randomF32(rows * D, r), w = randomF32(D, r, 0.5, 1.5);
    const wantRes = new Float64Array(rows * D), wantOut = new Float64Array(rows * D);
    for (let i = 0; i < rows; i++) {
      let ss = 0;
      for (let j = 0; j < D; j++) {
        const v = Math.fround(x[i * D + j]! + res[i * D + j]!);
        wantRes[i * D + j] = v;
        ss += v * v;
      }
      const inv = 1 / Math.sqrt(ss / D + 1e-5);
      for (let j = 0; j < D; j++) wantOut[i * D + j] = wantRes[i * D + j]! * inv * w[j]!;
    }
    const out = new Float32Array(rows * D);
    k.addRmsNormF32(rows, D, x, res, res, w, 1e-5, out);
    assert.deepEqual(Array.from(res), Array.from(wantRes));
    assertClose(out, wantOut, 1e-6, 'rmsnorm');
  });

  it('refuses out aliasing residualOut and a bad eps', () => {
    const x = new Float32Array(8).fill(1), w = new Float32Array(4).fill(1), ro = new Float32Array(8);
    assert.throws(() => k.addRmsNormF32(2, 4, x, null, ro, w, 1e-5, ro), /'out' must not overlap 'residualOut'/);
    assert.throws(() => k.addRmsNormF32(2, 4, x, null, ro, w, -1, new Float32Array(8)), /'eps' must be in \[0, 1\]/);
    assert.throws(() => k.addRmsNormF32(2, 0, x, null, ro, w, 1e-5, new Float32Array(8)), /'D' = 0 is outside/);
  });
});

describe('causalConv1dF32', () => {
  it('matches JS in both directions with SiLU (exact and fast), reading the x half of a wider row', () => {
    const r = rng(4);
    const B = 2, L = 6, E = 5, K = 4, ldx = 2 * E;
    const x = randomF32(B * L * ldx, r), w = randomF32(E * K, r), bias = randomF32(E, r);
    for (const reverse of [false, true]) {
      const want = new Float64Array(B * L * E);
      for (let b = 0; b < B; b++) {
        for (let t = 0; t < L; t++) {
          for (let e = 0; e < E; e++) {
            let acc = bias[e]!;
            for (let j = 0; j < K; j++) {
              const src = reverse ? t + j : t - j;
              if (src >= 0 && src < L) acc += w[e * K + K - 1 - j]! * x[(b * L + src) * ldx + e]!;
            }
            want[(b * L + t) * E + e] = silu(acc);
          }
        }
      }
      const out = new Float32Array(B * L * E);
      k.causalConv1dF32(B, L, E, K, x, ldx, w, bias, reverse, true, out, E, 'exact');
      assertClose(out, want, 1e-6, `conv reverse=${reverse}`);
      // The quantized path's SiLU: relative error ≤ 1.1e-4 (AVX-512; exact elsewhere).
      const fast = new Float32Array(B * L * E);
      k.causalConv1dF32(B, L, E, K, x, ldx, w, bias, reverse, true, fast, E, 'fast');
      for (let i = 0; i < fast.length; i++) {
        assert.ok(Math.abs(fast[i]! - want[i]!) <= 1.2e-4 * Math.abs(want[i]!) + 1e-7,
          `fast SiLU conv reverse=${reverse} [${i}]: ${fast[i]} vs ${want[i]}`);
      }
    }
  });

  it('rejects a short weight and an in-place call', () => {
    const x = new Float32Array(24);
    assert.throws(() => k.causalConv1dF32(1, 6, 4, 4, x, 4, new Float32Array(15), null, false, true, new Float32Array(24), 4, 'exact'),
      /causalConv1dF32: 'weight' has 15 elements, needs 16/);
    assert.throws(() => k.causalConv1dF32(1, 6, 4, 4, x, 4, new Float32Array(16), null, false, true, x, 4, 'exact'),
      /'out' must not overlap 'x'/);
    assert.throws(() => k.causalConv1dF32(1, 6, 4, 4, x, 4, new Float32Array(16), null, false, true, new Float32Array(24), 4,
      'rough' as 'fast'), /causalConv1dF32: 'siluMath' must be 'exact' \| 'fast'/);
  });
});

describe('selectiveScanF32', () => {
  function jsScan(o: {
    L: number; E: number; N: number; u: Float32Array; delta: Float32Array; A: Float32Array; Bm: Float32Array;
    Cm: Float32Array; D: Float32Array; z: Float32Array; dbias: Float32Array; reverse: boolean;
  }): Float64Array {
    const { L, E, N } = o;
    const y = new Float64Array(L * E);
    for (let e = 0; e < E; e++) {
      const h = new Float64Array(N);
      for (let s = 0; s < L; s++) {
        const t = o.reverse ? L - 1 - s : s;
        let dt = o.delta[t * E + e]! + o.dbias[e]!;
        dt = dt > 20 ? dt : Math.log1p(Math.exp(dt));
        const u = o.u[t * E + e]!;
        let acc = 0;
        for (let n = 0; n < N; n++) {
          h[n] = Math.exp(dt * o.A[e * N + n]!) * h[n]! + dt * o.Bm[t * N + n]! * u;
          acc += h[n]! * o.Cm[t * N + n]!;
        }
        acc += o.D[e]! * u;
        y[t * E + e] = acc * silu(o.z[t * E + e]!);
      }
    }
    return y;
  }

  it('matches a JS recurrence in both directions; B and C are views into one buffer', () => {
    const r = rng(5);
    const L = 9, E = 18, N = 16;
    const u = randomF32(L * E, r), delta = randomF32(L * E, r, -3, 1), z = randomF32(L * E, r);
    const A = new Float32Array(E * N).map((_, i) => -(1 + (i % N)) * r(0.6, 1.4));
    const bc = randomF32(L * 2 * N, r);  // [L, 2N]: B then C per token, like x_proj's output
    const Bm = new Float32Array(L * N), Cm = new Float32Array(L * N);
    for (let t = 0; t < L; t++) {
      Bm.set(bc.subarray(t * 2 * N, t * 2 * N + N), t * N);
      Cm.set(bc.subarray(t * 2 * N + N, (t + 1) * 2 * N), t * N);
    }
    const D = randomF32(E, r), dbias = randomF32(E, r);
    for (const reverse of [false, true]) {
      const y = new Float32Array(L * E);
      k.selectiveScanF32({
        B: 1, L, E, N, u, ldu: E, delta, lddelta: E, A, Bm: bc, ldB: 2 * N, Cm: bc.subarray(N), ldC: 2 * N,
        D, z, ldz: E, deltaBias: dbias, reverse, y, ldy: E,
      });
      assertClose(y, jsScan({ L, E, N, u, delta, A, Bm, Cm, D, z, dbias, reverse }), 2e-6, `scan reverse=${reverse}`);
      // The quantized path's math: within its bound of the exact recurrence (L = 9 steps of ≤ 1.1e-4).
      const yf = new Float32Array(L * E);
      k.selectiveScanF32({
        B: 1, L, E, N, u, ldu: E, delta, lddelta: E, A, Bm: bc, ldB: 2 * N, Cm: bc.subarray(N), ldC: 2 * N,
        D, z, ldz: E, deltaBias: dbias, reverse, y: yf, ldy: E, math: 'fast',
      });
      assertClose(yf, jsScan({ L, E, N, u, delta, A, Bm, Cm, D, z, dbias, reverse }), 1.5e-3, `fast scan reverse=${reverse}`);
    }
  });

  it('validates the options object', () => {
    const f = new Float32Array(64);
    const base = { B: 1, L: 2, E: 2, N: 2, u: f, ldu: 2, delta: f, lddelta: 2, A: f, Bm: f, ldB: 2, Cm: f, ldC: 2,
      y: new Float32Array(4), ldy: 2 };
    assert.throws(() => (k.selectiveScanF32 as (a: unknown) => void)(5), /selectiveScanF32: expected one options object/);
    assert.throws(() => k.selectiveScanF32({ ...base, u: undefined as unknown as Float32Array }),
      /selectiveScanF32: 'u' must be a Float32Array/);
    assert.throws(() => k.selectiveScanF32({ ...base, z: f }), /'ldz' must be an integer/);
    assert.throws(() => k.selectiveScanF32({ ...base, y: new Float32Array(3) }), /'y' has 3 elements, needs 4/);
    assert.throws(() => k.selectiveScanF32({ ...base, ldB: 1 }), /row stride of 'Bm' \(1\) is smaller/);
    assert.throws(() => k.selectiveScanF32({ ...base, y: f }), /'y' must not overlap 'u'/);
    assert.throws(() => k.selectiveScanF32({ ...base, reverse: 1 as unknown as boolean }), /'reverse' must be a boolean/);
    assert.throws(() => k.selectiveScanF32({ ...base, math: 'quick' as 'fast' }), /'math'/);
    assert.doesNotThrow(() => k.selectiveScanF32(base));
  });
});

describe('patchEmbedF32', () => {
  it('matches a JS convolution', () => {
    const r = rng(6);
    const B = 1, C = 2, H = 7, W = 6, P = 3, S = 2, D = 4;
    const img = randomF32(B * C * H * W, r), w = randomF32(D * C * P * P, r), bias = randomF32(D, r);
    const gh = (H - P) / S + 1 | 0, gw = ((W - P) / S | 0) + 1;
    const want = new Float64Array(gh * gw * D);
    for (let gy = 0; gy < gh; gy++) {
      for (let gx = 0; gx < gw; gx++) {
        for (let d = 0; d < D; d++) {
          let acc = bias[d]!;
          for (let c = 0; c < C; c++) {
            for (let ky = 0; ky < P; ky++) {
              for (let kx = 0; kx < P; kx++) acc += w[((d * C + c) * P + ky) * P + kx]! * img[(c * H + gy * S + ky) * W + gx * S + kx]!;
            }
          }
          want[(gy * gw + gx) * D + d] = acc;
        }
      }
    }
    const out = new Float32Array(gh * gw * D);
    k.patchEmbedF32(B, C, H, W, P, S, img, w, bias, D, out);
    assertClose(out, want, 1e-6, 'patch embed');
  });

  it('rejects a patch larger than the image', () => {
    assert.throws(() => k.patchEmbedF32(1, 1, 4, 4, 5, 1, new Float32Array(16), new Float32Array(25), null, 1, new Float32Array(1)),
      /patchEmbedF32: patch size 'P' exceeds the image/);
  });
});

describe('quantizeU8 / quantizeParamsDynamic', () => {
  it('quantize with round half to even, per-token parameters by row % period', () => {
    const x = Float32Array.from([0.5, 1.5, 2.5, -0.5, 300, -300, 0.25, 0.75]);
    const invScale = Float32Array.from([1, 2]);
    const zero = Int32Array.from([10, 0]);
    const q = new Uint8Array(8);
    k.quantizeU8(2, 4, 2, x, 4, null, invScale, zero, 255, q, 4);
    // row 0: round(0.5)=0, round(1.5)=2, round(2.5)=2, round(-0.5)=-0 → +10
    // row 1: (300·2) clamps to 255, (−600) to 0, round(0.5)=0, round(1.5)=2
    assert.deepEqual(Array.from(q), [10, 12, 12, 10, 255, 0, 0, 2]);
    const qr = new Uint8Array(8);
    k.quantizeU8Ref(2, 4, 2, x, 4, null, invScale, zero, 255, qr, 4);
    assert.deepEqual(qr, q);
  });

  it('dynamic parameters match the formula computed in JS (float32 arithmetic)', () => {
    const r = rng(7);
    const rows = 4, cols = 13;
    const x = randomF32(rows * cols, r, -2, 3);
    const scale = new Float32Array(rows), invScale = new Float32Array(rows), zero = new Int32Array(rows);
    k.quantizeParamsDynamic(rows, cols, x, cols, null, 255, scale, invScale, zero);
    const f = Math.fround;
    for (let i = 0; i < rows; i++) {
      let lo = 0, hi = 0;
      for (let j = 0; j < cols; j++) {
        lo = Math.min(lo, x[i * cols + j]!);
        hi = Math.max(hi, x[i * cols + j]!);
      }
      const s = f(f(Math.max(f(hi - lo), 1e-8)) / 255);
      const zq = f(-lo / s);
      const rounded = Math.abs(zq % 1) === 0.5 ? 2 * Math.round(zq / 2) : Math.round(zq);
      assert.equal(scale[i], s);
      assert.equal(invScale[i], f(1 / s));
      assert.equal(zero[i], Math.min(255, Math.max(0, rounded)));
    }
  });

  it('rejects short parameter arrays and a bad qmax', () => {
    const x = new Float32Array(8), q = new Uint8Array(8);
    assert.throws(() => k.quantizeU8(2, 4, 2, x, 4, null, new Float32Array(1), new Int32Array(2), 255, q, 4),
      /quantizeU8: 'invScale' has 1 elements, needs 2/);
    assert.throws(() => k.quantizeU8(2, 4, 1, x, 4, null, new Float32Array(1), new Int32Array(1), 256, q, 4),
      /'qmax' = 256 is outside \[1, 255\]/);
    assert.throws(() => k.quantizeU8(2, 4, 1, x, 4, null, new Float32Array(1), new Int32Array(1), 255, new Int8Array(8) as unknown as Uint8Array, 4),
      /'q' must be a Uint8Array/);
  });
});
