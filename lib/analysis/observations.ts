import { median, type Histogram, type TokenStats } from './stats.js';

/**
 * The paper's three observations, tested on one linear input with fixed, stated rules (the
 * plots show the data; these verdicts only summarise it).
 */
export const RULES = {
  tokenwise: 'token-wise variation: the widest per-token range (max − min over images and channels) is at least 2× the median position\'s range',
  clsToken: 'special class token: its per-token standard deviation or range differs from the median patch position\'s by at least 2× (either way)',
  channelOutliers: 'channel-wise outliers: at least one channel\'s max|x| is 10× the median channel\'s or more',
  longTail: 'long tail: excess kurtosis of all values above 3 (a Laplace distribution\'s)',
} as const;

export const THRESHOLDS = { tokenRangeRatio: 2, clsRatio: 2, outlierRatio: 10, excessKurtosis: 3 } as const;

export interface LinearObservations {
  tokenwise: { holds: boolean; rangeMaxOverMedian: number; rangeMaxOverMin: number; widestPosition: number };
  clsToken: { holds: boolean; position: number; stdRatio: number; rangeRatio: number; stdRank: number; rangeRank: number };
  channelOutliers: { holds: boolean; maxOverMedian: number; outlierChannels: number[]; afterSmoothing: { label: string; maxOverMedian: number }[] };
  longTail: { holds: boolean; excessKurtosis: number; peakOverStd: number; beyond4Std: number };
}

/** Rank of v among values, 1 = largest. */
function rankDesc(values: readonly number[], v: number): number {
  return 1 + values.filter((u) => u > v).length;
}

export function observe(tokens: TokenStats, clsPos: number, absMax: Float32Array, smoothed: { label: string; absMax: Float32Array }[], hist: Histogram): LinearObservations {
  const L = tokens.mean.length;
  const range = tokens.max.map((hi, t) => hi - tokens.min[t]!);
  const std = tokens.variance.map(Math.sqrt);
  const widest = range.indexOf(Math.max(...range));
  const medRange = median(range);
  const minRange = Math.min(...range);
  const patch = (a: number[]) => a.filter((_, t) => t !== clsPos);
  const clsStd = std[clsPos] ?? NaN;
  const clsRange = range[clsPos] ?? NaN;
  const stdRatio = clsStd / median(patch(std));
  const rangeRatio = clsRange / median(patch(range));
  const farFromOne = (r: number) => r >= THRESHOLDS.clsRatio || r <= 1 / THRESHOLDS.clsRatio;
  const medCh = median(absMax);
  const outliers: number[] = [];
  absMax.forEach((a, j) => {
    if (a >= THRESHOLDS.outlierRatio * medCh) outliers.push(j);
  });
  outliers.sort((a, b) => absMax[b]! - absMax[a]!);
  const maxOverMedian = (a: Float32Array) => {
    const m = median(a);
    return m > 0 ? Math.max(...a) / m : Infinity;
  };
  return {
    tokenwise: {
      holds: medRange > 0 ? range[widest]! / medRange >= THRESHOLDS.tokenRangeRatio : false,
      rangeMaxOverMedian: medRange > 0 ? range[widest]! / medRange : Infinity,
      rangeMaxOverMin: minRange > 0 ? range[widest]! / minRange : Infinity,
      widestPosition: widest,
    },
    clsToken: {
      holds: L > 1 && clsPos >= 0 && clsPos < L && (farFromOne(stdRatio) || farFromOne(rangeRatio)),
      position: clsPos, stdRatio, rangeRatio, stdRank: rankDesc(std, clsStd), rangeRank: rankDesc(range, clsRange),
    },
    channelOutliers: {
      holds: outliers.length > 0,
      maxOverMedian: maxOverMedian(absMax),
      outlierChannels: outliers,
      afterSmoothing: smoothed.map((s) => ({ label: s.label, maxOverMedian: maxOverMedian(s.absMax) })),
    },
    longTail: {
      holds: hist.excessKurtosis > THRESHOLDS.excessKurtosis,
      excessKurtosis: hist.excessKurtosis, peakOverStd: hist.peakOverStd, beyond4Std: hist.beyond4Std,
    },
  };
}

/** How many of the analysed linear inputs each observation holds for, and which. */
export interface ObservationSummary {
  key: keyof typeof RULES;
  rule: string;
  holds: number;
  of: number;
  /** Sites where it holds. */
  where: string[];
  /** Sites where it does not. */
  whereNot: string[];
}

export function summarize(linears: readonly { site: string; observations: LinearObservations }[]): ObservationSummary[] {
  return (Object.keys(RULES) as (keyof typeof RULES)[]).map((key) => {
    const where = linears.filter((l) => l.observations[key].holds).map((l) => l.site);
    const whereNot = linears.filter((l) => !l.observations[key].holds).map((l) => l.site);
    return { key, rule: RULES[key], holds: where.length, of: linears.length, where, whereNot };
  });
}
