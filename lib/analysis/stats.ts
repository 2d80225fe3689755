/**
 * Statistics of one linear's input X, held token-major as [rows, channels] with rows = images·L
 * (row r is token position r % L of image ⌊r / L⌋). Sums run in float64.
 */

/** Per token position t, over all images and channels at t. */
export interface TokenStats {
  /** Mean of X at each position, [L]. */
  mean: number[];
  /** Population variance of X at each position, [L]. */
  variance: number[];
  min: number[];
  max: number[];
}

export function tokenStats(x: Float32Array, rows: number, channels: number, seqLen: number): TokenStats {
  checkShape(x, rows, channels, seqLen);
  const images = rows / seqLen;
  const n = images * channels;
  const mean: number[] = [];
  const variance: number[] = [];
  const min: number[] = [];
  const max: number[] = [];
  for (let t = 0; t < seqLen; t++) {
    let sum = 0;
    let lo = Infinity;
    let hi = -Infinity;
    for (let b = 0; b < images; b++) {
      const o = (b * seqLen + t) * channels;
      for (let j = 0; j < channels; j++) {
        const v = x[o + j]!;
        sum += v;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
    }
    const mu = sum / n;
    // Second pass around the mean: no cancellation for large, nearly constant tokens.
    let ss = 0;
    for (let b = 0; b < images; b++) {
      const o = (b * seqLen + t) * channels;
      for (let j = 0; j < channels; j++) {
        const d = x[o + j]! - mu;
        ss += d * d;
      }
    }
    mean.push(mu);
    variance.push(ss / n);
    min.push(lo);
    max.push(hi);
  }
  return { mean, variance, min, max };
}

/** max over rows of |X[r, j]| for every channel j, [channels]. */
export function channelAbsMax(x: Float32Array, rows: number, channels: number): Float32Array {
  checkShape(x, rows, channels, 1);
  const out = new Float32Array(channels);
  for (let r = 0; r < rows; r++) {
    const o = r * channels;
    for (let j = 0; j < channels; j++) {
      const a = Math.abs(x[o + j]!);
      if (a > out[j]!) out[j] = a;
    }
  }
  return out;
}

/** A histogram of every value of X with equal-width bins over [min, max], plus tail measures. */
export interface Histogram {
  /** Lower edge of bin 0 and upper edge of the last bin (the data's min and max). */
  lo: number;
  hi: number;
  /** counts[k] = #values in [lo + k·w, lo + (k+1)·w), the last bin also holding hi; w = (hi − lo)/bins. */
  counts: number[];
  n: number;
  mean: number;
  std: number;
  /** E[(x−μ)⁴]/σ⁴ − 3: 0 for a Gaussian, 3 for a Laplace; larger means a longer tail. */
  excessKurtosis: number;
  /** max|x − μ| / σ. */
  peakOverStd: number;
  /** Fraction of values with |x − μ| > 4σ (6.3e-5 for a Gaussian). */
  beyond4Std: number;
}

export function histogram(x: Float32Array, bins: number): Histogram {
  if (!Number.isInteger(bins) || bins < 1) throw new RangeError(`histogram: ${bins} bins`);
  const n = x.length;
  if (n === 0) throw new RangeError('histogram of no values');
  let lo = Infinity;
  let hi = -Infinity;
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const v = x[i]!;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
    sum += v;
  }
  const mean = sum / n;
  let m2 = 0;
  let m4 = 0;
  let peak = 0;
  for (let i = 0; i < n; i++) {
    const d = x[i]! - mean;
    const d2 = d * d;
    m2 += d2;
    m4 += d2 * d2;
    if (Math.abs(d) > peak) peak = Math.abs(d);
  }
  m2 /= n;
  m4 /= n;
  const std = Math.sqrt(m2);
  const counts = new Array<number>(bins).fill(0);
  const width = (hi - lo) / bins;
  let beyond = 0;
  for (let i = 0; i < n; i++) {
    const v = x[i]!;
    const k = width > 0 ? Math.min(bins - 1, Math.floor((v - lo) / width)) : 0;
    counts[k]!++;
    if (Math.abs(v - mean) > 4 * std) beyond++;
  }
  return {
    lo, hi, counts, n, mean, std,
    excessKurtosis: m2 > 0 ? m4 / (m2 * m2) - 3 : 0,
    peakOverStd: std > 0 ? peak / std : 0,
    beyond4Std: std > 0 ? beyond / n : 0,
  };
}

export function median(values: ArrayLike<number>): number {
  const s = Array.from(values).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function checkShape(x: Float32Array, rows: number, channels: number, seqLen: number): void {
  if (!(Number.isInteger(rows) && Number.isInteger(channels) && rows > 0 && channels > 0)) throw new RangeError(`stats: invalid shape [${rows}, ${channels}]`);
  if (x.length !== rows * channels) throw new RangeError(`stats: ${x.length} values for [${rows}, ${channels}]`);
  if (!Number.isInteger(seqLen) || seqLen < 1 || rows % seqLen !== 0) throw new RangeError(`stats: ${rows} rows are not whole sequences of ${seqLen} tokens`);
}
