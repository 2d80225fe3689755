import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TopLevelSpec } from 'vega-lite';
import type { LinearAnalysis, ModelAnalysis } from './analyze.js';
import { blockLossChart, channelChart, errorChart, histogramChart, lossCurveChart, tokenChart } from './charts.js';
import { pageHtml, type PageFigure, type PageSection } from './html.js';
import { BASELINE_METHODS, METHOD_DESCRIPTIONS, METHOD_LABELS } from './methods.js';
import { summarize, THRESHOLDS, type ObservationSummary } from './observations.js';

/** What a report says about where its numbers came from. */
export interface ReportContext {
  title: string;
  model: string;
  data: string;
  /** The calibration's per-block losses, for `calibrate --report`. */
  calibration?: { method: string; blocks: { block: number; lossBefore: number; lossAfter: number; lossCurve: number[] }[] } | null;
  /** Why the error chart has no calibrated (JLSS) column, when it has none. */
  calibratedNote?: string;
}

/** One plot of the report: its PNG and the JSON beside it share the stem. */
export interface ReportPlot {
  stem: string;
  kind: 'tokens' | 'channels' | 'histogram' | 'errors' | 'jlss-loss' | 'block-loss';
  block: number | null;
  linear: string | null;
  width: number;
  height: number;
}

export interface ReportResult {
  dir: string;
  plots: ReportPlot[];
  observations: ObservationSummary[];
}

const DEFINITIONS = {
  tokens: 'For each token position t (in image order; the class token at clsPos): mean, population variance, min and max over all images and all input channels at t.',
  channels: 'For each input channel j: max over all rows (images × tokens) of |x_j|; after smoothing, max|x_j / σ_j| = max|x_j| / σ_j for each σ listed.',
  histogram: 'All values of the input; equal-width bins over [lo, hi] = [min, max], bin k holds [lo + k·w, lo + (k+1)·w), the last one also hi. Moments are over all values.',
  errors: 'Output error of each linear: y = x·Wᵀ on the FP model\'s input x of that layer against the fake-quantized ŷ = dequant(Q(x/σ))·dequant(Q(W·σ))ᵀ. mse = mean (ŷ − y)² over all outputs; relativeMse = mse / mean y²; cosine = mean over rows of cos(ŷ_row, y_row).',
} as const;

/** Plots rendered at once. */
const RENDER_CONCURRENCY = 3;

const f32 = (a: Float32Array | readonly number[]) => Array.from(a);

export function tokensJson(a: LinearAnalysis) {
  return {
    plot: 'tokens', site: a.site, block: a.block, linear: a.linear, definition: DEFINITIONS.tokens,
    images: a.images, seqLen: a.seqLen, clsPos: a.clsPos, channels: a.channels,
    mean: a.tokens.mean, variance: a.tokens.variance, min: a.tokens.min, max: a.tokens.max,
    observations: { tokenwise: a.observations.tokenwise, clsToken: a.observations.clsToken },
  };
}

export function channelsJson(a: LinearAnalysis) {
  return {
    plot: 'channels', site: a.site, block: a.block, linear: a.linear, definition: DEFINITIONS.channels,
    rows: a.images * a.seqLen, channels: a.channels, absMax: f32(a.channelAbsMax),
    smoothing: a.smoothing.map((s) => ({ label: s.label, sigma: f32(s.sigma), absMax: f32(a.channelAbsMax.map((m, j) => m / s.sigma[j]!)) })),
    outlierRatio: THRESHOLDS.outlierRatio, observations: { channelOutliers: a.observations.channelOutliers },
  };
}

export function histogramJson(a: LinearAnalysis) {
  const h = a.histogram;
  return {
    plot: 'histogram', site: a.site, block: a.block, linear: a.linear, definition: DEFINITIONS.histogram,
    bins: h.counts.length, lo: h.lo, hi: h.hi, binWidth: (h.hi - h.lo) / h.counts.length, counts: h.counts,
    n: h.n, mean: h.mean, std: h.std, excessKurtosis: h.excessKurtosis, peakOverStd: h.peakOverStd, beyond4Std: h.beyond4Std,
    observations: { longTail: a.observations.longTail },
  };
}

export function errorsJson(block: number, linears: readonly LinearAnalysis[], m: ModelAnalysis) {
  const methods = [
    ...BASELINE_METHODS.map((k) => ({ method: k, label: METHOD_LABELS[k], description: METHOD_DESCRIPTIONS[k] })),
    ...(m.calibratedLabel ? [{ method: 'calibrated', label: m.calibratedLabel, description: 'the calibrated model\'s own quantizers (σ, weight and activation step sizes)' }] : []),
  ];
  return {
    plot: 'errors', block, wbits: m.wbits, abits: m.abits, alpha: m.alpha, images: m.images, definition: DEFINITIONS.errors, methods,
    errors: linears.flatMap((a) => a.errors.map((e) => ({ linear: a.linear, site: a.site, method: e.method, label: e.label, mse: e.mse, relativeMse: e.relativeMse, cosine: e.cosine }))),
  };
}

async function emit(dir: string, stem: string, spec: TopLevelSpec, json: unknown): Promise<{ width: number; height: number }> {
  // Loaded on first use: vega and sharp take a while to import, and every CLI command imports this module.
  const { renderChart } = await import('./render.js');
  const chart = await renderChart(spec);
  await writeFile(join(dir, `${stem}.png`), chart.png);
  await writeFile(join(dir, `${stem}.json`), JSON.stringify(json, null, 1) + '\n');
  return { width: chart.width, height: chart.height };
}

/**
 * Writes the report: a PNG per plot with its numbers beside it as JSON (same stem),
 * summary.json, and index.html showing everything on one page with no external resources.
 */
export async function writeReport(dir: string, m: ModelAnalysis, ctx: ReportContext, onPlot?: (stem: string) => void): Promise<ReportResult> {
  if (dir === '') throw new Error('the report folder name is empty');
  await mkdir(dir, { recursive: true });
  // Plots are queued in page order, then rendered a few at a time (rasterising runs on libuv's threads).
  const queue: { plot: Omit<ReportPlot, 'width' | 'height'>; spec: TopLevelSpec; json: unknown }[] = [];
  const add = async (plot: Omit<ReportPlot, 'width' | 'height'>, spec: TopLevelSpec, json: unknown) => {
    queue.push({ plot, spec, json });
  };
  const cal = ctx.calibration;
  if (cal) {
    const curves = cal.blocks.filter((b) => b.lossCurve.length > 0).map((b) => ({ block: b.block, losses: b.lossCurve }));
    if (curves.length > 0) {
      await add({ stem: 'jlss-loss', kind: 'jlss-loss', block: null, linear: null }, lossCurveChart(curves),
        { plot: 'jlss-loss', method: cal.method, definition: 'loss before each JLSS step', blocks: curves });
    }
    await add({ stem: 'block-loss', kind: 'block-loss', block: null, linear: null }, blockLossChart(cal.blocks),
      { plot: 'block-loss', method: cal.method, blocks: cal.blocks.map((b) => ({ block: b.block, lossBefore: b.lossBefore, lossAfter: b.lossAfter })) });
  }
  for (const block of m.blocks) {
    const linears = m.linears.filter((a) => a.block === block);
    if (linears.length === 0) continue;
    await add({ stem: `b${block}-errors`, kind: 'errors', block, linear: null },
      errorChart(block, linears.map((a) => ({ linear: a.linear, errors: a.errors })), m.wbits, m.abits), errorsJson(block, linears, m));
    for (const a of linears) {
      const stem = `b${block}-${a.linear}`;
      await add({ stem: `${stem}-tokens`, kind: 'tokens', block, linear: a.linear }, tokenChart(a), tokensJson(a));
      await add({ stem: `${stem}-channels`, kind: 'channels', block, linear: a.linear }, channelChart(a, THRESHOLDS.outlierRatio), channelsJson(a));
      await add({ stem: `${stem}-histogram`, kind: 'histogram', block, linear: a.linear }, histogramChart(a), histogramJson(a));
    }
  }
  const plots: ReportPlot[] = new Array(queue.length);
  let next = 0;
  const worker = async () => {
    while (next < queue.length) {
      const k = next++;
      const { plot, spec, json } = queue[k]!;
      onPlot?.(plot.stem);
      plots[k] = { ...plot, ...(await emit(dir, plot.stem, spec, json)) };
    }
  };
  await Promise.all(Array.from({ length: Math.min(RENDER_CONCURRENCY, queue.length) }, worker));
  const observations = summarize(m.linears);
  const summary = {
    title: ctx.title, model: ctx.model, data: ctx.data, images: m.images, seqLen: m.seqLen, clsPos: m.clsPos, depth: m.depth,
    wbits: m.wbits, abits: m.abits, alpha: m.alpha, blocks: m.blocks, layers: m.layers, calibrated: m.calibratedLabel,
    calibratedNote: ctx.calibratedNote ?? null, seconds: m.seconds, observations,
    linears: m.linears.map((a) => ({ site: a.site, block: a.block, linear: a.linear, observations: a.observations, errors: a.errors })),
    plots: plots.map((p) => ({ ...p, png: `${p.stem}.png`, json: `${p.stem}.json` })),
  };
  await writeFile(join(dir, 'summary.json'), JSON.stringify(summary, null, 1) + '\n');
  await writeFile(join(dir, 'index.html'), pageHtml(pageModel(m, ctx, plots, observations)));
  return { dir, plots, observations };
}

function pageModel(m: ModelAnalysis, ctx: ReportContext, plots: ReportPlot[], observations: ObservationSummary[]) {
  const fig = (p: ReportPlot, caption: string): PageFigure => ({ src: `${p.stem}.png`, json: `${p.stem}.json`, width: p.width, height: p.height, caption });
  const sections: PageSection[] = [];
  const top = plots.filter((p) => p.block === null);
  if (top.length > 0) {
    sections.push({ id: 'calibration', title: `Calibration (${ctx.calibration?.method ?? ''})`, figures: top.map((p) => fig(p, p.kind === 'jlss-loss' ? 'JLSS loss curve of every block' : 'loss of every block before and after JLSS')), rows: [] });
  }
  for (const block of m.blocks) {
    const errors = plots.find((p) => p.block === block && p.kind === 'errors');
    if (!errors) continue;
    const rows = m.linears.filter((a) => a.block === block).map((a) => ({
      title: `${a.site}.in (${a.channels} channels)`,
      figures: (['tokens', 'channels', 'histogram'] as const).map((k) => fig(plots.find((p) => p.block === block && p.linear === a.linear && p.kind === k)!, {
        tokens: '(a) per-token mean, range and variance; class token marked',
        channels: '(b) per-channel max|x| before and after smoothing',
        histogram: '(c) value histogram, log-scale counts',
      }[k])),
      table: a.errors.map((e) => [e.label, e.mse.toExponential(3), e.relativeMse.toExponential(3), e.cosine.toFixed(6)]),
    }));
    sections.push({ id: `block-${block}`, title: `Block ${block}`, figures: [fig(errors, `output error of each linear at W${m.wbits}A${m.abits}`)], rows });
  }
  return {
    title: ctx.title,
    facts: [
      ['model', ctx.model], ['images', `${m.images} of ${ctx.data}`], ['sequence', `${m.seqLen} tokens, class token at position ${m.clsPos}`],
      ['bits', `W${m.wbits}A${m.abits}`], ['SmoothQuant α', String(m.alpha)], ['blocks', m.blocks.join(', ')], ['linears', m.layers.join(', ')],
    ] as [string, string][],
    observations,
    methods: [
      ...BASELINE_METHODS.map((k) => [METHOD_LABELS[k], METHOD_DESCRIPTIONS[k]] as [string, string]),
      [m.calibratedLabel ?? 'JLSS', m.calibratedLabel ? 'the calibrated model\'s own quantizers' : `not shown: ${ctx.calibratedNote ?? 'no calibrated model'}`],
    ] as [string, string][],
    errorDefinition: DEFINITIONS.errors,
    sections,
  };
}
