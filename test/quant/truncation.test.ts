import assert from 'node:assert/strict';
import { test } from 'node:test';
import { roundHalfEven } from '../../lib/quant/rounding.js';
import { smoothQuantScales } from '../../lib/quant/smoothing.js';
import { asymmetricParams, quantizeWeightLevels, searchActivationParams, searchWeightScales, SEARCH_P } from '../../lib/quant/truncation.js';

/** Deterministic pseudo-random values with a long tail (never all zeros). */
function values(n: number, seed: number, tail = 4): Float32Array {
  const out = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) % 2147483648;
    const u = s / 2147483648;
    out[i] = (u - 0.5) * Math.exp(tail * Math.sin(i * 0.7 + seed)) ;
  }
  return out;
}

function weightError(row: Float32Array, s: number, qmax: number): number {
  let e = 0;
  for (const x of row) e += Math.abs(x - Math.max(-qmax, Math.min(qmax, roundHalfEven(x / s))) * s) ** SEARCH_P;
  return e;
}

function actError(x: Float32Array, scale: number, zero: number, qmax: number): number {
  let e = 0;
  for (const v of x) e += Math.abs(v - (Math.max(0, Math.min(qmax, roundHalfEven(v / scale) + zero)) - zero) * scale) ** SEARCH_P;
  return e;
}

test('round half to even', () => {
  assert.deepEqual([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4, -2.6].map(roundHalfEven), [0, 2, 2, -0, -2, -2, 2, -3]);
});

test('weight truncation search picks the best of the 100 clip ranges (brute force in double)', () => {
  for (const [rows, n, qmax] of [[7, 33, 127], [5, 96, 7], [3, 1, 127]] as const) {
    const w = values(rows * n, rows + n, 3);
    const got = searchWeightScales(w, rows, n, qmax);
    for (let o = 0; o < rows; o++) {
      const row = w.subarray(o * n, (o + 1) * n);
      const r = row.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
      let best = Infinity;
      for (let i = 1; i <= 100; i++) best = Math.min(best, weightError(row, Math.max((r * i) / 100 / qmax, 1e-8), qmax));
      const mine = weightError(row, got[o]!, qmax);
      assert.ok(mine <= best * (1 + 1e-3) + 1e-12 * r ** SEARCH_P, `row ${o}: error ${mine} vs best ${best}`);
      // It is one of the candidates.
      const i = Math.round((got[o]! * qmax * 100) / r);
      assert.ok(Math.abs(got[o]! - (r * i) / 100 / qmax) <= 1e-6 * got[o]!, `scale ${got[o]} is not a candidate`);
    }
  }
});

test('activation search tries the full range and shrinkings, includes zero, beats min-max on long tails', () => {
  const groups = 4, n = 3000, qmax = 15;
  const x = values(groups * n, 11, 5);
  const { scale, zero } = searchActivationParams(x, groups, n, qmax);
  for (let g = 0; g < groups; g++) {
    const v = x.subarray(g * n, (g + 1) * n);
    const lo = v.reduce((m, a) => Math.min(m, a), Infinity);
    const hi = v.reduce((m, a) => Math.max(m, a), -Infinity);
    const full = asymmetricParams(lo, hi, qmax);
    let best = Infinity;
    for (let i = 0; i < 100; i++) {
      const sh = ((hi - lo) * i) / 100 / 2;
      const p = asymmetricParams(lo + sh, hi - sh, qmax);
      best = Math.min(best, actError(v, p.scale, p.zero, qmax));
    }
    const mine = actError(v, scale[g]!, zero[g]!, qmax);
    assert.ok(mine <= best * (1 + 1e-3), `group ${g}: ${mine} vs best ${best}`);
    assert.ok(mine < actError(v, full.scale, full.zero, qmax), 'a long tail is clipped');
    assert.ok(zero[g]! >= 0 && zero[g]! <= qmax);
  }
});

test('activation search on constant and all-zero tokens gives finite parameters that represent them', () => {
  const n = 64;
  const x = new Float32Array(3 * n);
  x.fill(2.5, 0, n); // constant positive
  x.fill(0, n, 2 * n); // all zero
  x.fill(-7, 2 * n); // constant negative
  const { scale, zero } = searchActivationParams(x, 3, n, 255);
  for (let g = 0; g < 3; g++) {
    assert.ok(Number.isFinite(scale[g]!) && scale[g]! > 0);
    const v = x[g * n]!;
    const deq = (Math.max(0, Math.min(255, roundHalfEven(v / scale[g]!) + zero[g]!)) - zero[g]!) * scale[g]!;
    assert.ok(Math.abs(deq - v) <= scale[g]! / 2 + 1e-6, `group ${g}: ${v} → ${deq}`);
  }
});

test('SmoothQuant scales follow the formula, with the clamps for dead channels', () => {
  const act = Float32Array.of(4, 0, 100);
  const w = Float32Array.of(0.5, 0, 2, -1, 0, -0.25); // [2 out, 3 in]
  const s = smoothQuantScales(act, w, 2, 3, 0.5);
  assert.ok(Math.abs(s[0]! - Math.sqrt(4) / Math.sqrt(1)) < 1e-6);
  assert.ok(Math.abs(s[1]! - Math.sqrt(1e-3) / Math.sqrt(1e-5)) < 1e-3);
  assert.ok(Math.abs(s[2]! - Math.sqrt(100) / Math.sqrt(2)) < 1e-5);
});

test('weight levels are symmetric, clamped and round half to even', () => {
  const w = Float32Array.of(0.5, 1.5, -2.5, 100, -100, 0.49);
  const q = quantizeWeightLevels(w, 1, 6, Float32Array.of(1), 7);
  assert.deepEqual(Array.from(q), [0, 2, -2, 7, -7, 0]);
});
