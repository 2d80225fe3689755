import type { TopLevelSpec } from 'vega-lite';
import { VIM_LINEARS } from '../models/vim/model.js';
import type { LinearAnalysis, MethodError } from './analyze.js';

/**
 * Vega-Lite specifications of every plot of a report. Each takes the same numbers its JSON
 * file holds; layout and styling live here, rendering in render.ts.
 */

const WIDTH = 640;
const FONT = 'DejaVu Sans, Helvetica, Arial, sans-serif';
const COMMON = {
  $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
  background: 'white',
  padding: 8,
  config: { font: FONT, axis: { labelFontSize: 11, titleFontSize: 12 }, title: { fontSize: 14, anchor: 'start' }, legend: { labelFontSize: 11, titleFontSize: 12 } },
} as const;

/** Smallest value a log axis shows; exact zeros become this (their JSON keeps the true value). */
const LOG_FLOOR = 1e-12;

/** (a) Per-token mean, range and variance across the sequence, class-token position marked. */
export function tokenChart(a: LinearAnalysis): TopLevelSpec {
  const values = a.tokens.mean.map((mean, t) => ({
    token: t, mean, min: a.tokens.min[t]!, max: a.tokens.max[t]!, variance: Math.max(a.tokens.variance[t]!, LOG_FLOOR),
  }));
  const cls = [{ token: a.clsPos, label: `class token (${a.clsPos})` }];
  const x = { field: 'token', type: 'quantitative', title: 'token position', scale: { domain: [0, a.seqLen - 1], nice: false } } as const;
  const clsRule = { data: { values: cls }, mark: { type: 'rule', color: '#d62728', strokeDash: [4, 3] }, encoding: { x: { field: 'token', type: 'quantitative' } } } as const;
  const clsText = { data: { values: cls }, mark: { type: 'text', color: '#d62728', align: 'left', dx: 4, y: 8, fontSize: 11 }, encoding: { x: { field: 'token', type: 'quantitative' }, text: { field: 'label' } } } as const;
  return {
    ...COMMON,
    title: { text: `${a.site}.in: per-token statistics`, subtitle: `over ${a.images} images × ${a.channels} channels at each position` },
    data: { values },
    vconcat: [
      {
        width: WIDTH, height: 180,
        layer: [
          { mark: { type: 'area', opacity: 0.25, color: '#4c78a8' }, encoding: { x, y: { field: 'min', type: 'quantitative', title: 'value (band: min..max)' }, y2: { field: 'max' } } },
          { mark: { type: 'line', color: '#4c78a8', point: { size: 14 } }, encoding: { x, y: { field: 'mean', type: 'quantitative' } } },
          clsRule, clsText,
        ],
      },
      {
        width: WIDTH, height: 140,
        layer: [
          { mark: { type: 'line', color: '#f58518' }, encoding: { x, y: { field: 'variance', type: 'quantitative', title: 'variance (log)', scale: { type: 'log' } } } },
          { mark: { type: 'point', filled: true, size: 16, color: '#f58518' }, encoding: { x, y: { field: 'variance', type: 'quantitative' } } },
          {
            transform: [{ filter: `datum.token === ${a.clsPos}` }],
            mark: { type: 'point', filled: true, size: 90, color: '#d62728' },
            encoding: { x, y: { field: 'variance', type: 'quantitative' } },
          },
          clsRule,
        ],
      },
    ],
  } as TopLevelSpec;
}

/** (b) Per-channel max|x| before smoothing and after dividing by each σ; rule at 10× the median. */
export function channelChart(a: LinearAnalysis, outlierRatio: number): TopLevelSpec {
  const series = ['raw x', ...a.smoothing.map((s) => `x / ${s.label}`)];
  const values: { channel: number; series: string; absMax: number }[] = [];
  a.channelAbsMax.forEach((m, j) => values.push({ channel: j, series: series[0]!, absMax: m }));
  a.smoothing.forEach((s, k) => a.channelAbsMax.forEach((m, j) => values.push({ channel: j, series: series[k + 1]!, absMax: m / s.sigma[j]! })));
  return {
    ...COMMON,
    title: { text: `${a.site}.in: per-channel max|x|`, subtitle: `before and after smoothing; dashed: ${outlierRatio}× the median channel` },
    data: { values },
    facet: { row: { field: 'series', type: 'nominal', title: null, sort: series, header: { labelAngle: 0, labelAlign: 'left', labelAnchor: 'start', labelOrient: 'top', labelFontSize: 12 } } },
    spec: {
      width: WIDTH, height: 110,
      layer: [
        {
          mark: { type: 'bar', color: '#4c78a8' },
          encoding: {
            x: { field: 'channel', type: 'quantitative', title: 'input channel', scale: { domain: [-0.5, a.channels - 0.5], nice: false } },
            y: { field: 'absMax', type: 'quantitative', title: 'max|x|' },
          },
        },
        {
          transform: [{ aggregate: [{ op: 'median', field: 'absMax', as: 'median' }] }, { calculate: `datum.median * ${outlierRatio}`, as: 'threshold' }],
          mark: { type: 'rule', color: '#d62728', strokeDash: [4, 3] },
          encoding: { y: { field: 'threshold', type: 'quantitative' } },
        },
      ],
    },
    resolve: { scale: { y: 'independent' } },
  } as TopLevelSpec;
}

/** (c) Histogram of every input value, log-scale counts, with μ ± 4σ marked. */
export function histogramChart(a: LinearAnalysis): TopLevelSpec {
  const h = a.histogram;
  const w = (h.hi - h.lo) / h.counts.length;
  const values = h.counts.map((count, k) => ({ lo: h.lo + k * w, hi: h.lo + (k + 1) * w, count })).filter((v) => v.count > 0);
  const marks = [{ at: h.mean - 4 * h.std, label: 'μ − 4σ' }, { at: h.mean + 4 * h.std, label: 'μ + 4σ' }].filter((m) => m.at >= h.lo && m.at <= h.hi);
  return {
    ...COMMON,
    title: {
      text: `${a.site}.in: value histogram`,
      subtitle: `${h.n.toLocaleString('en-US')} values, excess kurtosis ${h.excessKurtosis.toFixed(2)}, max|x−μ| = ${h.peakOverStd.toFixed(1)}σ, ${(h.beyond4Std * 100).toPrecision(2)}% beyond 4σ`,
    },
    width: WIDTH, height: 220,
    layer: [
      {
        data: { values },
        mark: { type: 'bar', color: '#54a24b' },
        encoding: {
          x: { field: 'lo', type: 'quantitative', title: 'value', scale: { domain: [h.lo, h.hi], nice: false } },
          x2: { field: 'hi' },
          y: { field: 'count', type: 'quantitative', title: 'count (log)', scale: { type: 'log', domainMin: 0.5 } },
          y2: { datum: 0.5 },
        },
      },
      {
        data: { values: marks },
        mark: { type: 'rule', color: '#d62728', strokeDash: [4, 3] },
        encoding: { x: { field: 'at', type: 'quantitative' } },
      },
      // Labels outside their rules: left of μ − 4σ, right of μ + 4σ.
      ...marks.map((m, k) => ({
        data: { values: [m] },
        mark: { type: 'text', color: '#d62728', dx: k === 0 && marks.length === 2 ? -4 : 4, align: k === 0 && marks.length === 2 ? 'right' : 'left', y: 8, fontSize: 11 },
        encoding: { x: { field: 'at', type: 'quantitative' }, text: { field: 'label' } },
      })),
    ],
  } as TopLevelSpec;
}

/** Per-layer output error of every method in one block: MSE and 1 − cosine, both log scale. */
export function errorChart(block: number, rows: { linear: string; errors: MethodError[] }[], wbits: number, abits: number): TopLevelSpec {
  const methods = [...new Set(rows.flatMap((r) => r.errors.map((e) => e.label)))];
  const values = rows.flatMap((r) => r.errors.map((e) => ({
    linear: r.linear, method: e.label, mse: Math.max(e.mse, LOG_FLOOR), oneMinusCos: Math.max(1 - e.cosine, LOG_FLOOR),
  })));
  const order = VIM_LINEARS.filter((l) => rows.some((r) => r.linear === l));
  const x = { field: 'linear', type: 'nominal', title: null, sort: order, axis: { labelAngle: 0 } } as const;
  const color = { field: 'method', type: 'nominal', title: 'method', sort: methods, scale: { scheme: 'tableau10' } } as const;
  // Log-scale bars need an explicit baseline: the decade below the smallest value.
  const floor = (field: 'mse' | 'oneMinusCos') => 10 ** Math.floor(Math.log10(0.9 * Math.min(...values.map((v) => v[field]))));
  const panel = (field: 'mse' | 'oneMinusCos', title: string) => ({
    width: WIDTH, height: 170,
    mark: { type: 'bar' },
    encoding: {
      x, xOffset: { field: 'method', type: 'nominal', sort: methods }, color,
      y: { field, type: 'quantitative', title, scale: { type: 'log', domainMin: floor(field), nice: true }, axis: { format: '.0e' } }, y2: { datum: floor(field) },
    },
  });
  return {
    ...COMMON,
    title: { text: `block ${block}: output error of each linear at W${wbits}A${abits}`, subtitle: 'linear output on the FP model\'s input of that layer, quantized vs FP; lower is better' },
    data: { values },
    vconcat: [panel('mse', 'MSE (log)'), panel('oneMinusCos', '1 − cosine (log)')],
  } as TopLevelSpec;
}

/** JLSS loss of every block against the step (only blocks that trained). */
export function lossCurveChart(curves: { block: number; losses: number[] }[]): TopLevelSpec {
  const values = curves.flatMap((c) => c.losses.map((loss, step) => ({ block: c.block, step, loss: Math.max(loss, LOG_FLOOR) })));
  return {
    ...COMMON,
    title: { text: 'JLSS loss per block', subtitle: 'mean over tokens of 1 − cos(FP mixer output, quantized mixer output), before each step' },
    data: { values },
    width: WIDTH, height: 260,
    mark: { type: 'line', strokeWidth: 1.5 },
    encoding: {
      x: { field: 'step', type: 'quantitative', title: 'step' },
      y: { field: 'loss', type: 'quantitative', title: 'loss (log)', scale: { type: 'log' } },
      color: { field: 'block', type: 'ordinal', title: 'block', scale: { scheme: 'viridis' } },
    },
  } as TopLevelSpec;
}

/** Each block's loss before and after calibration's training. */
export function blockLossChart(blocks: { block: number; lossBefore: number; lossAfter: number }[]): TopLevelSpec {
  const stages = ['before JLSS', 'after JLSS'];
  const values = blocks.flatMap((b) => [
    { block: b.block, stage: stages[0], loss: Math.max(b.lossBefore, LOG_FLOOR) },
    { block: b.block, stage: stages[1], loss: Math.max(b.lossAfter, LOG_FLOOR) },
  ]);
  const floor = 10 ** Math.floor(Math.log10(0.9 * Math.min(...values.map((v) => v.loss))));
  return {
    ...COMMON,
    title: { text: 'block loss before and after JLSS', subtitle: 'mean over tokens of 1 − cos(FP mixer output, quantized mixer output)' },
    data: { values },
    width: WIDTH, height: 200,
    mark: { type: 'bar' },
    encoding: {
      x: { field: 'block', type: 'ordinal', title: 'block', axis: { labelAngle: 0 } },
      xOffset: { field: 'stage', type: 'nominal', sort: stages },
      color: { field: 'stage', type: 'nominal', title: null, sort: stages, scale: { range: ['#bab0ac', '#4c78a8'] } },
      y: { field: 'loss', type: 'quantitative', title: 'loss (log)', scale: { type: 'log', domainMin: floor } },
      y2: { datum: floor },
    },
  } as TopLevelSpec;
}
