import assert from 'node:assert/strict';
import { test } from 'node:test';
import { observe, summarize } from '../../lib/analysis/observations.js';
import { channelAbsMax, histogram, median, tokenStats } from '../../lib/analysis/stats.js';
import { gaussian, rng } from './tiny-vim.js';

/** Random activations [images·L, C] with a shifted, wider class token and two outlier channels. */
function activations(images: number, L: number, C: number, seed: number, cls: number): Float32Array {
  const normal = gaussian(rng(seed));
  const x = new Float32Array(images * L * C);
  for (let b = 0; b < images; b++) {
    for (let t = 0; t < L; t++) {
      for (let j = 0; j < C; j++) {
        let v = normal() * (1 + 0.1 * t) + 0.05 * t;
        if (t === cls) v = 3 + 6 * v;
        if (j === 2 || j === C - 1) v *= 40;
        x[(b * L + t) * C + j] = v;
      }
    }
  }
  return x;
}

const close = (a: number, b: number, rel = 1e-9, what = '') => assert.ok(Math.abs(a - b) <= rel * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);

test('per-token mean/variance/min/max match a direct computation over images × channels', () => {
  const [N, L, C] = [7, 13, 11];
  const x = activations(N, L, C, 5, 6);
  const s = tokenStats(x, N * L, C, L);
  for (let t = 0; t < L; t++) {
    const vals: number[] = [];
    for (let b = 0; b < N; b++) for (let j = 0; j < C; j++) vals.push(x[(b * L + t) * C + j]!);
    const mean = vals.reduce((a, v) => a + v, 0) / vals.length;
    const variance = vals.reduce((a, v) => a + (v - mean) ** 2, 0) / vals.length;
    close(s.mean[t]!, mean, 1e-9, `mean[${t}]`);
    close(s.variance[t]!, variance, 1e-9, `variance[${t}]`);
    assert.equal(s.min[t], Math.min(...vals));
    assert.equal(s.max[t], Math.max(...vals));
  }
  // The shifted class token is the largest variance of the sequence.
  assert.equal(s.variance.indexOf(Math.max(...s.variance)), 6);
});

test('per-channel max|x| matches a column-wise maximum', () => {
  const [rows, C] = [37, 9];
  const x = activations(1, rows, C, 9, -1);
  const m = channelAbsMax(x, rows, C);
  for (let j = 0; j < C; j++) {
    let ref = 0;
    for (let r = 0; r < rows; r++) ref = Math.max(ref, Math.abs(x[r * C + j]!));
    assert.equal(m[j], Math.fround(ref));
  }
});

test('histogram counts, moments and tail measures match independent computations', () => {
  const x = activations(5, 9, 13, 3, 4);
  const bins = 37;
  const h = histogram(x, bins);
  const vals = Array.from(x);
  const lo = Math.min(...vals);
  const hi = Math.max(...vals);
  assert.equal(h.lo, lo);
  assert.equal(h.hi, hi);
  assert.equal(h.n, vals.length);
  assert.equal(h.counts.reduce((a, c) => a + c, 0), vals.length);
  // Count bin k as the values between its two edges (the last edge inclusive).
  const w = (hi - lo) / bins;
  for (let k = 0; k < bins; k++) {
    const a = lo + k * w;
    const b = lo + (k + 1) * w;
    const ref = vals.filter((v) => v >= a && (k === bins - 1 ? v <= hi : v < b)).length;
    assert.equal(h.counts[k], ref, `bin ${k}`);
  }
  const mean = vals.reduce((a, v) => a + v, 0) / vals.length;
  const m2 = vals.reduce((a, v) => a + (v - mean) ** 2, 0) / vals.length;
  const m4 = vals.reduce((a, v) => a + (v - mean) ** 4, 0) / vals.length;
  close(h.mean, mean, 1e-9, 'mean');
  close(h.std, Math.sqrt(m2), 1e-9, 'std');
  close(h.excessKurtosis, m4 / m2 ** 2 - 3, 1e-9, 'kurtosis');
  close(h.peakOverStd, Math.max(...vals.map((v) => Math.abs(v - mean))) / Math.sqrt(m2), 1e-9, 'peak');
  assert.equal(h.beyond4Std, vals.filter((v) => Math.abs(v - mean) > 4 * Math.sqrt(m2)).length / vals.length);
});

test('a constant input gives one full bin and zero spread, not NaN', () => {
  const h = histogram(new Float32Array(20).fill(1.5), 8);
  assert.equal(h.counts[0], 20);
  assert.equal(h.std, 0);
  assert.equal(h.excessKurtosis, 0);
  assert.throws(() => tokenStats(new Float32Array(10), 5, 2, 3), /whole sequences/);
  assert.throws(() => histogram(new Float32Array(0), 4), /no values/);
});

test('observations: the rules fire on data built to show them and stay quiet on plain Gaussian data', () => {
  const [N, L, C] = [6, 11, 12];
  const x = activations(N, L, C, 11, 5);
  const abs = channelAbsMax(x, N * L, C);
  const smooth = abs.map((a) => Math.sqrt(a));
  const o = observe(tokenStats(x, N * L, C, L), 5, abs, [{ label: 'σ', absMax: abs.map((a, j) => a / smooth[j]!) }], histogram(x, 50));
  assert.equal(o.clsToken.holds, true);
  assert.equal(o.clsToken.stdRank, 1);
  assert.ok(o.clsToken.stdRatio > 4, `cls std ratio ${o.clsToken.stdRatio}`);
  assert.equal(o.channelOutliers.holds, true);
  assert.deepEqual([...o.channelOutliers.outlierChannels].sort((a, b) => a - b), [2, C - 1]);
  assert.ok(o.channelOutliers.afterSmoothing[0]!.maxOverMedian < o.channelOutliers.maxOverMedian, 'smoothing flattens the channels');
  assert.equal(o.tokenwise.holds, true);
  assert.equal(o.tokenwise.widestPosition, 5);

  const normal = gaussian(rng(4));
  const g = Float32Array.from({ length: N * L * C }, () => normal());
  const ga = channelAbsMax(g, N * L, C);
  const og = observe(tokenStats(g, N * L, C, L), 5, ga, [], histogram(g, 50));
  assert.equal(og.channelOutliers.holds, false);
  assert.equal(og.clsToken.holds, false);
  assert.equal(og.longTail.holds, false);
  assert.ok(Math.abs(og.longTail.excessKurtosis) < 0.5, `Gaussian kurtosis ${og.longTail.excessKurtosis}`);
  // A Student-t-like tail (Gaussian / sqrt of a small chi-square) is long.
  const heavy = g.map((v, i) => v / Math.sqrt(0.05 + (g[(i * 7 + 3) % g.length]! ** 2)));
  const oh = observe(tokenStats(heavy, N * L, C, L), 5, channelAbsMax(heavy, N * L, C), [], histogram(heavy, 50));
  assert.equal(oh.longTail.holds, true, `kurtosis ${oh.longTail.excessKurtosis}`);

  const s = summarize([{ site: 'a', observations: o }, { site: 'b', observations: og }]);
  const outl = s.find((e) => e.key === 'channelOutliers')!;
  assert.deepEqual([outl.holds, outl.of, outl.where, outl.whereNot], [1, 2, ['a'], ['b']]);
  assert.equal(median([3, 1, 2, 10]), 2.5);
});
