import type { LinearSite } from '../models/ops.js';
import { seededRandom } from '../quant/calibrate.js';
import { aQmax, wQmax, type LinearQuant } from '../quant/params.js';
import { smoothedWeight, smoothQuantScales } from '../quant/smoothing.js';
import { absmaxWeightScales, asymmetricParams, quantizeWeightLevels, searchActivationParams, searchWeightScales } from '../quant/truncation.js';

/**
 * The quantizers the per-layer error chart compares. The four baselines are built here from the
 * layer's FP input; 'calibrated' is whatever a calibration (JLSS for method ptq4vm) left in the
 * model's sites.
 */
export const BASELINE_METHODS = ['rtn-per-tensor', 'per-token-dynamic', 'pts', 'pts-smooth'] as const;
export type BaselineMethod = (typeof BASELINE_METHODS)[number];

export const METHOD_LABELS: Readonly<Record<BaselineMethod, string>> = {
  'rtn-per-tensor': 'RTN per-tensor',
  'per-token-dynamic': 'per-token dynamic',
  pts: 'PTS',
  'pts-smooth': 'PTS+σ',
};

export const METHOD_DESCRIPTIONS: Readonly<Record<BaselineMethod, string>> = {
  'rtn-per-tensor': 'weights: per-row absmax; activations: one min–max range for the whole tensor; no smoothing',
  'per-token-dynamic': 'weights: per-row absmax; activations: min–max of each row computed at run time; no smoothing',
  pts: 'weights: per-row truncation search; activations: per-token static, truncation search per token position; no smoothing',
  'pts-smooth': 'as PTS, on X/σ and W·σ with SmoothQuant σ (α) from the per-channel max|X|: the PTQ4VM initialisation before JLSS',
};

export interface BaselineOptions {
  wbits: number;
  abits: number;
  /** SmoothQuant migration strength for PTS+σ. */
  alpha: number;
  /** Per-channel max|X| over the calibration images (PTS+σ). */
  actAbsMax: Float32Array;
  seqLen: number;
  seed: number;
  /** Values per token position the activation search scores (a seeded subsample beyond this; min/max always from all). */
  searchSampleCap?: number;
}

/** The LinearQuant of a baseline method for `site`, from its FP input x [rows, in]. */
export function baselineQuant(method: BaselineMethod, site: LinearSite, x: Float32Array, rows: number, o: BaselineOptions): LinearQuant {
  const out = site.outFeatures;
  const inF = site.inFeatures;
  if (x.length !== rows * inF) throw new RangeError(`${site.name}: ${x.length} input values for [${rows}, ${inF}]`);
  const W = site.weight.data;
  const smooth = method === 'pts-smooth' ? smoothQuantScales(o.actAbsMax, W, out, inF, o.alpha) : new Float32Array(inF).fill(1);
  const ws = method === 'pts-smooth' ? smoothedWeight(W, out, inF, smooth) : W;
  const qw = wQmax(o.wbits);
  const searched = method === 'pts' || method === 'pts-smooth';
  const wscale = searched ? searchWeightScales(ws, out, inF, qw) : absmaxWeightScales(ws, out, inF, qw);
  const qweight = quantizeWeightLevels(ws, out, inF, wscale, qw);
  const qa = aQmax(o.abits);
  const base = { wbits: o.wbits, abits: o.abits, qweight, wscale, smooth };
  switch (method) {
    case 'per-token-dynamic':
      return { ...base, granularity: 'per-token-dynamic', actScale: new Float32Array(0), actZero: new Int32Array(0) };
    case 'rtn-per-tensor': {
      let lo = Infinity;
      let hi = -Infinity;
      for (let i = 0; i < x.length; i++) {
        if (x[i]! < lo) lo = x[i]!;
        if (x[i]! > hi) hi = x[i]!;
      }
      const p = asymmetricParams(lo, hi, qa);
      return { ...base, granularity: 'per-tensor-static', actScale: Float32Array.of(p.scale), actZero: Int32Array.of(p.zero) };
    }
    case 'pts':
    case 'pts-smooth': {
      const p = perTokenSearch(x, rows, inF, smooth, qa, o);
      // x is in image token order; a backward-branch site stores its parameters in its own,
      // reversed order (the quantized-file convention the executors read).
      if (site.reversedTokens) {
        p.scale.reverse();
        p.zero.reverse();
      }
      return { ...base, granularity: 'per-token-static', actScale: p.scale, actZero: p.zero };
    }
  }
}

/** Per-token-position truncation search on x/σ, as the calibration initialises PTS. */
function perTokenSearch(x: Float32Array, rows: number, inF: number, smooth: Float32Array, qmax: number, o: BaselineOptions): { scale: Float32Array; zero: Int32Array } {
  const L = o.seqLen;
  const images = rows / L;
  const total = images * inF;
  const n = Math.min(total, o.searchSampleCap ?? 16384);
  const values = new Float32Array(L * n);
  const gmin = new Float32Array(L).fill(Infinity);
  const gmax = new Float32Array(L).fill(-Infinity);
  const rand = seededRandom(o.seed + 7919);
  for (let t = 0; t < L; t++) {
    const dst = values.subarray(t * n, (t + 1) * n);
    for (let b = 0; b < images; b++) {
      const row = (b * L + t) * inF;
      for (let j = 0; j < inF; j++) {
        const v = x[row + j]! / smooth[j]!;
        if (v < gmin[t]!) gmin[t] = v;
        if (v > gmax[t]!) gmax[t] = v;
        if (n === total) dst[b * inF + j] = v;
      }
    }
    if (n < total) {
      for (let k = 0; k < n; k++) {
        const idx = Math.floor(rand() * total);
        const b = Math.floor(idx / inF);
        const j = idx % inF;
        dst[k] = x[(b * L + t) * inF + j]! / smooth[j]!;
      }
    }
  }
  return searchActivationParams(values, L, n, qmax, { min: gmin, max: gmax });
}
