import { addon } from '../backend/addon.js';
import { clamp, roundHalfEven } from './rounding.js';

/** Exponent of the truncation-search error, mean |x − Q(x)|^p (the reference's choice). */
export const SEARCH_P = 2.4;
/** Candidates per search. */
export const SEARCH_STEPS = 100;
const EPS = 1e-8;

/**
 * Per-row symmetric weight step sizes by truncation search: for row o with r = max|w|, try clip
 * ranges r·i/100 (i = 1..100, the last being the full range) and keep the one minimising
 * mean |w − Q(w)|^2.4, Q(w) = clamp(round(w/s), ±qmax)·s with s = range/qmax.
 */
export function searchWeightScales(w: Float32Array, out: number, inF: number, qmax: number): Float32Array {
  const scales = new Float32Array(out);
  searchNative().searchWeightScales(out, inF, w, qmax, SEARCH_STEPS, SEARCH_P, scales);
  return scales;
}

/** Per-row absmax weight scales (round-to-nearest baselines). */
export function absmaxWeightScales(w: Float32Array, out: number, inF: number, qmax: number): Float32Array {
  const scales = new Float32Array(out);
  for (let o = 0; o < out; o++) {
    let r = 0;
    for (let j = 0; j < inF; j++) r = Math.max(r, Math.abs(w[o * inF + j]!));
    scales[o] = Math.max(r / qmax, EPS);
  }
  return scales;
}

/** Levels of w under per-row scales: clamp(round_half_even(w / s), ±qmax) as int8. */
export function quantizeWeightLevels(w: Float32Array, out: number, inF: number, scales: Float32Array, qmax: number): Int8Array {
  const q = new Int8Array(out * inF);
  for (let o = 0; o < out; o++) {
    const s = scales[o]!;
    for (let j = 0; j < inF; j++) q[o * inF + j] = clamp(roundHalfEven(Math.fround(w[o * inF + j]! / s)), -qmax, qmax);
  }
  return q;
}

/** Asymmetric activation parameters covering [lo, hi] (which is widened to include 0). */
export function asymmetricParams(lo: number, hi: number, qmax: number): { scale: number; zero: number } {
  const l = Math.min(lo, 0);
  const h = Math.max(hi, 0);
  const scale = Math.max((h - l) / qmax, EPS);
  const zero = clamp(-roundHalfEven(l / scale), 0, qmax);
  return { scale, zero };
}

/**
 * Asymmetric activation parameters per group (one row of `values` per group, e.g. one token
 * position) by truncation search over symmetric shrinkings of [min, max]: candidate i
 * (i = 0..99) keeps the centred fraction 1 − i/100 of the range — i = 0 is the full range, which
 * the reference code never tries — widened to include 0; the candidate with the smallest
 * mean |x − Q(x)|^2.4 wins. `groupMin/Max` give the true range when `values` is a subsample.
 */
export function searchActivationParams(values: Float32Array, groups: number, n: number, qmax: number, range?: { min: Float32Array; max: Float32Array }): { scale: Float32Array; zero: Int32Array } {
  const scale = new Float32Array(groups);
  const zero = new Int32Array(groups);
  searchNative().searchActivationParams(groups, n, values, range?.min ?? null, range?.max ?? null, qmax, SEARCH_STEPS, SEARCH_P, scale, zero);
  return { scale, zero };
}

interface SearchBinding {
  searchWeightScales(rows: number, n: number, w: Float32Array, qmax: number, steps: number, p: number, scale: Float32Array): void;
  searchActivationParams(groups: number, n: number, values: Float32Array, gmin: Float32Array | null, gmax: Float32Array | null,
    qmax: number, steps: number, p: number, scale: Float32Array, zero: Int32Array): void;
}

function searchNative(): SearchBinding {
  return addon() as unknown as SearchBinding;
}
