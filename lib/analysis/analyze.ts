import { vimEmbed, vimMixer } from '../models/vim/graph.js';
import { VIM_LINEARS, type VimLinearName, type VimModel } from '../models/vim/model.js';
import type { LinearQuant } from '../quant/params.js';
import { smoothQuantScales } from '../quant/smoothing.js';
import { CpuExecutor } from '../runtime/cpu-executor.js';
import type { Tensor } from '../tensor/tensor.js';
import { BASELINE_METHODS, baselineQuant, METHOD_LABELS } from './methods.js';
import { observe, type LinearObservations } from './observations.js';
import { linearOutputError, type OutputError } from './quant-error.js';
import { channelAbsMax, histogram, tokenStats, type Histogram, type TokenStats } from './stats.js';

/** A quantizer's output error on one linear. */
export interface MethodError extends OutputError {
  /** rtn-per-tensor | per-token-dynamic | pts | pts-smooth | calibrated */
  method: string;
  label: string;
}

/** Smoothing factors σ of one linear: activations are divided by them. */
export interface SmoothingSeries {
  label: string;
  sigma: Float32Array;
}

export interface LinearAnalysis {
  block: number;
  linear: VimLinearName;
  /** The site's tensor-name prefix, e.g. layers.0.mixer.in_proj. */
  site: string;
  images: number;
  seqLen: number;
  clsPos: number;
  channels: number;
  tokens: TokenStats;
  channelAbsMax: Float32Array;
  /** SmoothQuant σ (α) and, for a calibrated model, its own σ. */
  smoothing: SmoothingSeries[];
  histogram: Histogram;
  errors: MethodError[];
  observations: LinearObservations;
}

/** Where the last column of the error chart comes from: a calibrated model's quantizers. */
export interface CalibratedSource {
  /** Chart label: "JLSS" for a PTQ4VM calibration, else the method's name. */
  label: string;
  quantOf(block: number, linear: VimLinearName): LinearQuant | null;
}

export interface AnalyzeOptions {
  blocks: readonly number[];
  layers: readonly VimLinearName[];
  wbits: number;
  abits: number;
  alpha: number;
  seed: number;
  /** Equal-width bins of the value histograms. */
  histogramBins?: number;
  /** Values per token position the PTS searches score (default 16384, as calibration: then PTS+σ in block 0 is exactly the PTQ4VM initialisation). */
  searchSampleCap?: number;
  calibrated?: CalibratedSource | null;
  onProgress?: (message: string) => void;
}

export interface ModelAnalysis {
  images: number;
  seqLen: number;
  clsPos: number;
  depth: number;
  wbits: number;
  abits: number;
  alpha: number;
  blocks: number[];
  layers: VimLinearName[];
  calibratedLabel: string | null;
  linears: LinearAnalysis[];
  seconds: number;
}

/** First, middle and last block (the 0, 11, 23 for depth 24). */
export function defaultBlocks(depth: number): number[] {
  return [...new Set([0, Math.floor((depth - 1) / 2), depth - 1])];
}

/**
 * Runs the FP model over `images` block by block (all images at once, so each block's six
 * linear inputs exist in full), and for every chosen block and linear computes the input
 * statistics and each quantizer's output error on that FP input. Every method sees the same
 * input, so the errors isolate one layer's quantization. Quantization parameters of the
 * baselines come from the same images.
 */
export function analyzeModel(model: VimModel, images: Tensor<'F32'>, opts: AnalyzeOptions): ModelAnalysis {
  const t0 = performance.now();
  const depth = model.layers.length;
  for (const b of opts.blocks) {
    if (!Number.isInteger(b) || b < 0 || b >= depth) throw new RangeError(`block ${b} is out of range: the model has blocks 0..${depth - 1}`);
  }
  for (const l of opts.layers) if (!(VIM_LINEARS as readonly string[]).includes(l)) throw new RangeError(`unknown linear ${l}: one of ${VIM_LINEARS.join(', ')}`);
  const blocks = [...new Set(opts.blocks)].sort((a, b) => a - b);
  const layers = VIM_LINEARS.filter((l) => opts.layers.includes(l));
  const N = images.dim(0);
  const L = model.dims.seqLen;
  const D = model.config.embed_dim;
  const rows = N * L;
  const bins = opts.histogramBins ?? 100;
  const searchSampleCap = opts.searchSampleCap ?? 16384;
  // FP stream: quantizers a calibrated model carries must not touch it.
  const ops = new CpuExecutor({ quantMode: 'off' });
  let hidden = ops.toHost(vimEmbed(ops, model, images));
  ops.endForward();
  let residual: Float32Array | null = null;
  const linears: LinearAnalysis[] = [];
  const last = blocks[blocks.length - 1] ?? -1;
  for (let i = 0; i <= last; i++) {
    const layer = model.layers[i]!;
    const chosen = blocks.includes(i);
    const norm = ops.addNorm(ops.fromHost(hidden, rows, D), residual ? ops.fromHost(residual, rows, D) : null, layer.norm, model.config.eps, null);
    const inputs = new Map<string, Float32Array>();
    const out = vimMixer(ops, model, layer, norm.normed, chosen ? (name, m) => {
      if (name.endsWith('.in')) inputs.set(name.slice(0, -3), ops.toHost(m));
    } : undefined);
    hidden = ops.toHost(out);
    residual = ops.toHost(norm.residual);
    ops.endForward();
    if (!chosen) continue;
    const sites = model.linears(i);
    for (const l of layers) {
      opts.onProgress?.(`block ${i} ${l}`);
      const site = sites[l];
      const x = inputs.get(site.name);
      if (!x) throw new Error(`analysis: the graph produced no input tap for ${site.name}`);
      const C = site.inFeatures;
      const absMax = channelAbsMax(x, rows, C);
      const smoothing: SmoothingSeries[] = [{ label: `SmoothQuant σ (α = ${opts.alpha})`, sigma: smoothQuantScales(absMax, site.weight.data, site.outFeatures, C, opts.alpha) }];
      const calibratedQuant = opts.calibrated?.quantOf(i, l) ?? null;
      if (calibratedQuant && calibratedQuant.smooth.some((s) => s !== 1)) smoothing.push({ label: `${opts.calibrated!.label} σ`, sigma: calibratedQuant.smooth });
      const tokens = tokenStats(x, rows, C, L);
      const hist = histogram(x, bins);
      const errors: MethodError[] = BASELINE_METHODS.map((method) => ({
        method, label: METHOD_LABELS[method],
        ...linearOutputError(site, baselineQuant(method, site, x, rows, { wbits: opts.wbits, abits: opts.abits, alpha: opts.alpha, actAbsMax: absMax, seqLen: L, seed: opts.seed, searchSampleCap }), x, rows, L),
      }));
      if (calibratedQuant) errors.push({ method: 'calibrated', label: opts.calibrated!.label, ...linearOutputError(site, calibratedQuant, x, rows, L) });
      const smoothedMax = smoothing.map((s) => ({ label: s.label, absMax: absMax.map((a, j) => a / s.sigma[j]!) }));
      linears.push({
        block: i, linear: l, site: site.name, images: N, seqLen: L, clsPos: model.dims.clsPos, channels: C,
        tokens, channelAbsMax: absMax, smoothing, histogram: hist, errors,
        observations: observe(tokens, model.dims.clsPos, absMax, smoothedMax, hist),
      });
    }
  }
  return {
    images: N, seqLen: L, clsPos: model.dims.clsPos, depth, wbits: opts.wbits, abits: opts.abits, alpha: opts.alpha,
    blocks, layers: [...layers], calibratedLabel: opts.calibrated?.label ?? null, linears, seconds: (performance.now() - t0) / 1000,
  };
}
