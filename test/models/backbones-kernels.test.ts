/**
 * The backbone kernels through the addon: each against its scalar reference on random, ragged,
 * strided shapes, and the binding's argument checks (indices, lengths, strides, overlaps), which
 * must throw one-line errors naming the function and the argument.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { backboneKernels } from '../../lib/backend/backbone-kernels.js';

const k = backboneKernels();

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}
const rand = lcg(12345);
const randomArray = (n: number, lo = -2, hi = 2): Float32Array => Float32Array.from({ length: n }, () => lo + (hi - lo) * rand());
const int = (lo: number, hi: number): number => lo + Math.floor(rand() * (hi - lo + 1));

function maxDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** maxDiff relative to max|b|. */
function relDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < b.length; i++) m = Math.max(m, Math.abs(b[i]!));
  return maxDiff(a, b) / (m || 1);
}

test('pointwise, layer norm, token mean: kernel = reference on ragged strided shapes', () => {
  for (let trial = 0; trial < 12; trial++) {
    const rows = int(1, 40);
    const cols = int(1, 70);
    const ld = cols + int(0, 4);
    const x = randomArray(rows * ld, -6, 6);
    const z = randomArray(rows * ld, -6, 6);
    const a = new Float32Array(rows * ld);
    const b = new Float32Array(rows * ld);
    for (const [fast, ref, tol] of [[k.geluF32, k.geluF32Ref, 2e-6], [k.sigmoidF32, k.sigmoidF32Ref, 1e-6]] as const) {
      fast(rows, cols, x, ld, a, ld);
      ref(rows, cols, x, ld, b, ld);
      assert.ok(maxDiff(a, b) < tol, `${fast.name} rows=${rows} cols=${cols}`);
    }
    k.mulSiluF32(rows, cols, x, ld, z, ld, a, ld);
    k.mulSiluF32Ref(rows, cols, x, ld, z, ld, b, ld);
    assert.ok(maxDiff(a, b) < 1e-5);
    const w = randomArray(cols, 0.5, 1.5);
    const bias = randomArray(cols);
    k.layerNormF32(rows, cols, x, ld, w, bias, 1e-5, a, ld);
    k.layerNormF32Ref(rows, cols, x, ld, w, bias, 1e-5, b, ld);
    assert.ok(maxDiff(a, b) < 1e-4, `layerNorm cols=${cols}: ${maxDiff(a, b)}`);
    const B = Math.min(int(1, 3), rows);
    const L = Math.floor(rows / B);
    const select = Int32Array.from({ length: L }, (_, t) => (t === 0 || rand() < 0.7 ? t : -1));
    const m1 = new Float32Array(B * cols);
    const m2 = new Float32Array(B * cols);
    k.layerNormTokenMeanF32(B, L, cols, x, ld, select, w, bias, 1e-5, m1);
    k.layerNormTokenMeanF32Ref(B, L, cols, x, ld, select, w, bias, 1e-5, m2);
    assert.ok(maxDiff(m1, m2) < 1e-5);
    k.tokenMeanF32(B, L, cols, x, ld, m1);
    k.tokenMeanF32Ref(B, L, cols, x, ld, m2);
    assert.ok(maxDiff(m1, m2) < 1e-6);
  }
});

test('convolutions, RoPE, positions, patch merging: kernel = reference on ragged shapes', () => {
  for (let trial = 0; trial < 6; trial++) {
    const B = int(1, 2);
    const H = int(1, 11);
    const W = int(1, 9);
    const C = int(1, 19);
    const x = randomArray(B * H * W * C);
    for (const [K, S, P] of [[3, 2, 1], [3, 1, 1], [2, 2, 0]] as const) {
      if (H + 2 * P < K || W + 2 * P < K) continue;
      const Cout = int(1, 13);
      const w = randomArray(Cout * C * K * K);
      const bias = randomArray(Cout);
      const Ho = Math.floor((H + 2 * P - K) / S) + 1;
      const Wo = Math.floor((W + 2 * P - K) / S) + 1;
      for (const cf of [true, false]) {
        const o1 = new Float32Array(B * Ho * Wo * Cout);
        const o2 = new Float32Array(o1.length);
        k.conv2dF32(B, C, H, W, cf, x, Cout, K, S, P, w, bias, o1);
        k.conv2dF32Ref(B, C, H, W, cf, x, Cout, K, S, P, w, bias, o2);
        assert.ok(relDiff(o1, o2) < 1e-6, `conv2d ${H}×${W} K${K}/${S}/${P}: ${relDiff(o1, o2)}`);
      }
    }
    const dw = randomArray(C * 9);
    const o1 = new Float32Array(B * H * W * C);
    const o2 = new Float32Array(o1.length);
    k.depthwiseConv2dF32(B, H, W, C, x, C, 3, dw, null, true, o1, C);
    k.depthwiseConv2dF32Ref(B, H, W, C, x, C, 3, dw, null, true, o2, C);
    assert.ok(relDiff(o1, o2) < 1e-6);
    const L = H * W;
    const Ce = C + (C % 2);
    const xe = randomArray(B * L * Ce);
    const cos = randomArray(L * Ce);
    const sin = randomArray(L * Ce);
    const r1 = new Float32Array(xe.length);
    const r2 = new Float32Array(xe.length);
    k.ropeF32(B, L, Ce, xe, Ce, cos, sin, r1, Ce);
    k.ropeF32Ref(B, L, Ce, xe, Ce, cos, sin, r2, Ce);
    assert.ok(maxDiff(r1, r2) < 1e-6);
    k.addPositionsF32(B, L, Ce, xe, Ce, cos, r1, Ce);
    k.addPositionsF32Ref(B, L, Ce, xe, Ce, cos, r2, Ce);
    assert.deepEqual(r1, r2);
    const Ho = Math.ceil(H / 2);
    const Wo = Math.ceil(W / 2);
    const p1 = new Float32Array(B * Ho * Wo * 4 * C);
    const p2 = new Float32Array(p1.length);
    k.patchMergeF32(B, H, W, C, x, p1);
    k.patchMergeF32Ref(B, H, W, C, x, p2);
    assert.deepEqual(p1, p2);
  }
});

test('binding checks: indices, lengths, strides, overlaps and shapes are refused with one-line errors', () => {
  const x = randomArray(4 * 3);
  const out = new Float32Array(5 * 3);
  const err = (fn: () => void, re: RegExp): void => assert.throws(fn, (e: Error) => re.test(e.message) && !e.message.includes('\n'), re.source);
  err(() => k.gatherTokensF32(1, 4, 5, 3, x, 3, Int32Array.from([0, 1, -1, 4, 2]), out, 3), /^gatherTokensF32: 'index'\[3\] = 4 is outside \[-1, 4\)/);
  err(() => k.gatherTokensF32(1, 4, 5, 3, x, 3, Int32Array.from([0, 1, -2, 3, 2]), out, 3), /'index'\[2\] = -2 is outside/);
  err(() => k.gatherTokensF32(1, 4, 5, 3, x, 3, Int32Array.from([0, 1]), out, 3), /'index' has 2 elements, needs 5/);
  err(() => k.gatherTokensF32(1, 4, 5, 3, x, 2, Int32Array.from([0, 1, 2, 3, 0]), out, 3), /row stride of 'x' \(2\) is smaller than its row length \(3\)/);
  err(() => k.gatherTokensF32(1, 4, 5, 3, x, 3, Int32Array.from([0, 1, 2, 3, 0]), new Float32Array(14), 3), /'out' has 14 elements, needs 15/);
  err(() => k.gatherTokensF32(1, 4, 4, 3, x, 3, Int32Array.from([0, 1, 2, 3]), x.subarray(0), 3), /'out' must not overlap 'x'/);
  const y = randomArray(5 * 3);
  err(() => k.scatterTokensF32(1, 5, 4, 3, y, 3, Int32Array.from([0, 1, 1, -1, 2]), null, false, x, 3), /^scatterTokensF32: 'index' names row 1 twice/);
  err(() => k.scatterTokensF32(1, 5, 4, 3, y, 3, Int32Array.from([0, 1, 4, -1, 2]), null, false, x, 3), /'index'\[2\] = 4 is outside \[-1, 4\)/);
  err(() => k.scatterTokensF32(2, 5, 4, 3, randomArray(30), 3, Int32Array.from([0, 1, 3, -1, 2]), new Float32Array(5), false, randomArray(24), 3), /'gate' has 5 elements, needs 6/);
  err(() => k.depthwiseConv2dF32(1, 2, 2, 3, x, 3, 2, randomArray(12), null, false, new Float32Array(12), 3), /'K' must be odd/);
  err(() => k.ropeF32(1, 4, 3, x, 3, x, x, new Float32Array(12), 3), /'C' must be even/);
  err(() => k.layerNormTokenMeanF32(1, 4, 3, x, 3, Int32Array.from([-1, -1, -1, -1]), null, null, 1e-5, new Float32Array(3)), /'select' selects no row/);
  err(() => k.layerNormF32(4, 3, x, 3, null, null, 2, new Float32Array(12), 3), /'eps' must be in \[0, 1\]/);
  const big = randomArray(20);
  err(() => k.layerNormF32(4, 3, big, 3, null, null, 1e-5, big.subarray(1), 3), /'out' must not overlap 'x'/);
  err(() => k.conv2dF32(1, 3, 1, 1, true, x, 2, 3, 1, 0, randomArray(54), null, new Float32Array(2)), /the kernel is larger than the padded input/);
  err(() => k.geluF32(4, 3, big, 3, big.subarray(2), 3), /'out' must not overlap 'x'/);
  err(() => k.addF32(4, 3, x, 3, y, 2, new Float32Array(12), 3), /row stride of 'b'/);
  assert.throws(() => k.geluF32(4, 3, x, 3, new Float32Array(12) as unknown as Float32Array, '3' as unknown as number), /'ldo' must be a number/);
  assert.throws(() => (k.patchMergeF32 as unknown as (...a: unknown[]) => void)(1, 2, 2), /expected 6 arguments, got 3/);
  // In place is allowed where documented.
  const xi = x.slice();
  k.geluF32(4, 3, xi, 3, xi, 3);
  const want = new Float32Array(12);
  k.geluF32Ref(4, 3, x, 3, want, 3);
  assert.ok(maxDiff(xi, want) < 1e-6);
});
