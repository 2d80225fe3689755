import type { LinearSite } from '../models/ops.js';
import { vimEmbed, vimMixer } from '../models/vim/graph.js';
import { VIM_LINEARS, type VimLinearName, type VimModel } from '../models/vim/model.js';
import { CpuExecutor, type CpuMat } from '../runtime/cpu-executor.js';
import { Tensor } from '../tensor/tensor.js';
import type { QuantMetadata } from './file.js';
import { aQmax, wQmax, type ActGranularity, type LinearQuant } from './params.js';
import { smoothedWeight, smoothQuantScales } from './smoothing.js';
import { absmaxWeightScales, asymmetricParams, quantizeWeightLevels, searchActivationParams, searchWeightScales } from './truncation.js';
import { runJlss, type JlssResult } from './jlss.js';

export type CalibrationMethod = QuantMetadata['method'];
export const CALIBRATION_METHODS: readonly CalibrationMethod[] = ['ptq4vm', 'ptq4vm-nojlss', 'smoothquant', 'rtn'];

export interface CalibrateOptions {
  method: CalibrationMethod;
  wbits: number;
  abits: number;
  /** JLSS steps per block (full batch). */
  steps?: number;
  /** SmoothQuant migration strength α. */
  alpha?: number;
  seed?: number;
  /** 'all' trains the six linears; 'inout' only in_proj and out_proj (the reference code's behaviour). */
  jlssScope?: 'all' | 'inout';
  /** Activation granularity; default per-token static for PTQ4VM, per-tensor static for the baselines. */
  granularity?: ActGranularity;
  lrSmooth?: number;
  lrStep?: number;
  weightDecay?: number;
  clipNorm?: number;
  /** Values per token the activation search scores (a seeded subsample beyond this; min/max always from all). */
  searchSampleCap?: number;
  onProgress?: (e: CalibrationEvent) => void;
}

export type CalibrationEvent =
  | { kind: 'stats'; done: number; total: number }
  | { kind: 'block-start'; block: number; blocks: number }
  | { kind: 'jlss-step'; block: number; step: number; steps: number; loss: number }
  | { kind: 'block-done'; block: number; blocks: number; lossBefore: number; lossAfter: number; seconds: number };

export interface BlockReport {
  block: number;
  /** mean(1 − cos) of the quantized mixer output against the FP target, before and after JLSS. */
  lossBefore: number;
  lossAfter: number;
  lossCurve: number[];
  seconds: number;
}

export interface CalibrationReport {
  metadata: QuantMetadata;
  blocks: BlockReport[];
  seconds: number;
}

const SMOOTHED: ReadonlySet<CalibrationMethod> = new Set(['ptq4vm', 'ptq4vm-nojlss', 'smoothquant']);
const SEARCHED: ReadonlySet<CalibrationMethod> = new Set(['ptq4vm', 'ptq4vm-nojlss']);

/** A small seeded PRNG (mulberry32): the same seed gives the same calibration. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Per-input-channel max|x| of every quantizable linear's input over the calibration images (FP model). */
export function collectActivationMaxima(model: VimModel, images: Tensor<'F32'>, batch: number, onProgress?: (e: CalibrationEvent) => void): Map<string, Float32Array> {
  const ops = new CpuExecutor({ quantMode: 'fake' });
  const maxima = new Map<string, Float32Array>();
  const N = images.dim(0);
  const per = images.size / N;
  for (let start = 0; start < N; start += batch) {
    const n = Math.min(batch, N - start);
    const x = new Tensor('F32', [n, ...images.shape.slice(1)], images.data.subarray(start * per, (start + n) * per));
    let hidden = vimEmbed(ops, model, x);
    let residual: CpuMat | null = null;
    for (let i = 0; i < model.layers.length; i++) {
      ops.beginScope();
      const layer = model.layers[i]!;
      const norm = ops.addNorm(hidden, residual, layer.norm, model.config.eps, null);
      const out = vimMixer(ops, model, layer, norm.normed, (name, m) => {
        if (!name.endsWith('.in')) return;
        const key = name.slice(0, -3);
        let acc = maxima.get(key);
        if (!acc) maxima.set(key, (acc = new Float32Array(m.cols)));
        for (let r = 0; r < m.rows; r++) {
          const row = m.data.subarray(r * m.ld, r * m.ld + m.cols);
          for (let j = 0; j < m.cols; j++) {
            const a = Math.abs(row[j]!);
            if (a > acc[j]!) acc[j] = a;
          }
        }
      });
      hidden = out;
      residual = norm.residual;
      ops.endScope([hidden, residual]);
    }
    ops.endForward();
    onProgress?.({ kind: 'stats', done: start + n, total: N });
  }
  return maxima;
}

/** Host copy of a matrix view (streams outlive the executor's scopes). */
function copyMat(ops: CpuExecutor, m: CpuMat): Float32Array {
  return ops.toHost(m);
}

/** Mean over rows of 1 − cos(a_row, b_row). */
export function cosineLoss(a: Float32Array, b: Float32Array, rows: number, cols: number): number {
  let total = 0;
  for (let r = 0; r < rows; r++) {
    let ab = 0, aa = 0, bb = 0;
    for (let j = 0; j < cols; j++) {
      const x = a[r * cols + j]!, y = b[r * cols + j]!;
      ab += x * y;
      aa += x * x;
      bb += y * y;
    }
    total += 1 - ab / Math.max(Math.sqrt(aa * bb), 1e-12);
  }
  return total / rows;
}

/** Everything the initialisation of one linear needs. */
interface SiteInit {
  site: LinearSite;
  /** Its input on the quantized stream, [rows, inFeatures] (FP inside the block). */
  input: Float32Array;
}

function initSiteQuant(init: SiteInit, actMax: Float32Array | undefined, opts: Required<Pick<CalibrateOptions, 'method' | 'wbits' | 'abits' | 'alpha' | 'searchSampleCap' | 'seed'>> & { granularity: ActGranularity }, L: number): LinearQuant {
  const { site, input } = init;
  const out = site.outFeatures;
  const inF = site.inFeatures;
  const W = site.weight.data;
  const smooth = SMOOTHED.has(opts.method) && actMax ? smoothQuantScales(actMax, W, out, inF, opts.alpha) : new Float32Array(inF).fill(1);
  const ws = smoothedWeight(W, out, inF, smooth);
  const qw = wQmax(opts.wbits);
  const wscale = SEARCHED.has(opts.method) ? searchWeightScales(ws, out, inF, qw) : absmaxWeightScales(ws, out, inF, qw);
  const qweight = quantizeWeightLevels(ws, out, inF, wscale, qw);
  const qa = aQmax(opts.abits);
  const rows = input.length / inF;
  let actScale: Float32Array = new Float32Array(0);
  let actZero: Int32Array = new Int32Array(0);
  if (opts.granularity === 'per-tensor-static') {
    let lo = Infinity, hi = -Infinity;
    for (let r = 0; r < rows; r++) {
      for (let j = 0; j < inF; j++) {
        const v = input[r * inF + j]! / smooth[j]!;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
    }
    const p = asymmetricParams(lo, hi, qa);
    actScale = Float32Array.of(p.scale);
    actZero = Int32Array.of(p.zero);
  } else if (opts.granularity === 'per-token-static') {
    const images = rows / L;
    const total = images * inF;
    const n = Math.min(total, opts.searchSampleCap);
    const values = new Float32Array(L * n);
    const gmin = new Float32Array(L).fill(Infinity);
    const gmax = new Float32Array(L).fill(-Infinity);
    const rand = seededRandom(opts.seed + 7919);
    for (let t = 0; t < L; t++) {
      for (let b = 0; b < images; b++) {
        const row = (b * L + t) * inF;
        for (let j = 0; j < inF; j++) {
          const v = input[row + j]! / smooth[j]!;
          if (v < gmin[t]!) gmin[t] = v;
          if (v > gmax[t]!) gmax[t] = v;
        }
      }
      const dst = values.subarray(t * n, (t + 1) * n);
      if (n === total) {
        for (let b = 0; b < images; b++) for (let j = 0; j < inF; j++) dst[b * inF + j] = input[(b * L + t) * inF + j]! / smooth[j]!;
      } else {
        for (let k = 0; k < n; k++) {
          const idx = Math.floor(rand() * total);
          const b = Math.floor(idx / inF), j = idx % inF;
          dst[k] = input[(b * L + t) * inF + j]! / smooth[j]!;
        }
      }
    }
    const p = SEARCHED.has(opts.method)
      ? searchActivationParams(values, L, n, qa, { min: gmin, max: gmax })
      : minMaxPerGroup(gmin, gmax, qa);
    // Stored in the site's own token order (reversed for the backward branch).
    actScale = site.reversedTokens ? p.scale.slice().reverse() : p.scale;
    actZero = site.reversedTokens ? p.zero.slice().reverse() : p.zero;
  }
  return { wbits: opts.wbits, abits: opts.abits, granularity: opts.granularity, qweight, wscale, smooth, actScale, actZero };
}

function minMaxPerGroup(gmin: Float32Array, gmax: Float32Array, qmax: number): { scale: Float32Array; zero: Int32Array } {
  const scale = new Float32Array(gmin.length);
  const zero = new Int32Array(gmin.length);
  for (let g = 0; g < gmin.length; g++) {
    const p = asymmetricParams(gmin[g]!, gmax[g]!, qmax);
    scale[g] = p.scale;
    zero[g] = p.zero;
  }
  return { scale, zero };
}

/**
 * Quantizes `model` in place (fills every quantizable site's `quant`) with the chosen method,
 * block by block: block i is initialised (and, for PTQ4VM, trained by JLSS) on the output of the
 * already-quantized blocks 0..i−1, against the FP block's output on the FP stream.
 */
export function calibrate(model: VimModel, images: Tensor<'F32'>, options: CalibrateOptions): CalibrationReport {
  const t0 = performance.now();
  const opts = {
    method: options.method, wbits: options.wbits, abits: options.abits, onProgress: options.onProgress,
    steps: options.steps ?? 100, alpha: options.alpha ?? 0.5, seed: options.seed ?? 0, jlssScope: options.jlssScope ?? 'all',
    lrSmooth: options.lrSmooth ?? 1e-2, lrStep: options.lrStep ?? 5e-4, weightDecay: options.weightDecay ?? 1e-5,
    clipNorm: options.clipNorm ?? 2.0, searchSampleCap: options.searchSampleCap ?? 16384,
    granularity: options.granularity ?? (SEARCHED.has(options.method) ? 'per-token-static' : 'per-tensor-static'),
  };
  for (const s of model.allLinears()) s.quant = null;
  const N = images.dim(0);
  const L = model.dims.seqLen;
  const D = model.config.embed_dim;
  const rows = N * L;
  const actMax = SMOOTHED.has(opts.method) ? collectActivationMaxima(model, images, 64, opts.onProgress) : new Map<string, Float32Array>();

  const fpOps = new CpuExecutor({ quantMode: 'fake' });
  const qOps = new CpuExecutor({ quantMode: 'fake' });
  const emb = copyMat(fpOps, vimEmbed(fpOps, model, images));
  fpOps.endForward();
  let fpHidden: Float32Array = emb;
  let fpResidual: Float32Array | null = null;
  let qHidden: Float32Array = emb.slice();
  let qResidual: Float32Array | null = null;
  const blocks: BlockReport[] = [];

  for (let i = 0; i < model.layers.length; i++) {
    const tb = performance.now();
    opts.onProgress?.({ kind: 'block-start', block: i, blocks: model.layers.length });
    const layer = model.layers[i]!;
    const sites = model.linears(i);
    // FP stream: target = FP mixer output of block i.
    const fpIn = fpOps.addNorm(fpOps.fromHost(fpHidden, rows, D), fpResidual ? fpOps.fromHost(fpResidual, rows, D) : null, layer.norm, model.config.eps, null);
    const fpNormed = copyMat(fpOps, fpIn.normed.fp!);
    const nextFpResidual = copyMat(fpOps, fpIn.residual);
    const target = copyMat(fpOps, vimMixer(fpOps, model, layer, { fp: fpOps.fromHost(fpNormed, rows, D) }));
    fpOps.endForward();
    // Quantized stream: the block's input, and each linear's input with the block still in FP.
    const qIn = qOps.addNorm(qOps.fromHost(qHidden, rows, D), qResidual ? qOps.fromHost(qResidual, rows, D) : null, layer.norm, model.config.eps, null);
    const qNormed = copyMat(qOps, qIn.normed.fp!);
    const nextQResidual = copyMat(qOps, qIn.residual);
    const inputs = new Map<string, Float32Array>();
    vimMixer(qOps, model, layer, { fp: qOps.fromHost(qNormed, rows, D) }, (name, m) => {
      if (name.endsWith('.in')) inputs.set(name.slice(0, -3), qOps.toHost(m));
    });
    qOps.endForward();
    for (const l of VIM_LINEARS) {
      const site = sites[l];
      site.quant = initSiteQuant({ site, input: inputs.get(site.name)! }, actMax.get(site.name), opts, L);
    }
    inputs.clear();
    const runQuantized = (): Float32Array => {
      const out = copyMat(qOps, vimMixer(qOps, model, layer, { fp: qOps.fromHost(qNormed, rows, D) }));
      qOps.endForward();
      return out;
    };
    let qOut = runQuantized();
    const lossBefore = cosineLoss(qOut, target, rows, D);
    let lossAfter = lossBefore;
    let lossCurve: number[] = [];
    if (opts.method === 'ptq4vm' && opts.steps > 0) {
      const trainable: readonly VimLinearName[] = opts.jlssScope === 'inout' ? ['in_proj', 'out_proj'] : VIM_LINEARS;
      const result: JlssResult = runJlss({
        model, layer, normed: qNormed, target, rows, trainable, steps: opts.steps,
        lrSmooth: opts.lrSmooth, lrStep: opts.lrStep, weightDecay: opts.weightDecay, clipNorm: opts.clipNorm,
        onStep: (step, loss) => opts.onProgress?.({ kind: 'jlss-step', block: i, step, steps: opts.steps, loss }),
      });
      lossCurve = result.losses;
      qOut = runQuantized();
      lossAfter = cosineLoss(qOut, target, rows, D);
    }
    fpHidden = target;
    fpResidual = nextFpResidual;
    qHidden = qOut;
    qResidual = nextQResidual;
    const seconds = (performance.now() - tb) / 1000;
    blocks.push({ block: i, lossBefore, lossAfter, lossCurve, seconds });
    opts.onProgress?.({ kind: 'block-done', block: i, blocks: model.layers.length, lossBefore, lossAfter, seconds });
  }
  const metadata: QuantMetadata = {
    method: opts.method, wbits: opts.wbits, abits: opts.abits, granularity: opts.granularity, weight_granularity: 'per-channel',
    calib_size: N, seed: opts.seed,
    ...(SMOOTHED.has(opts.method) ? { alpha: opts.alpha } : {}),
    ...(opts.method === 'ptq4vm' ? { steps: opts.steps, jlss_scope: opts.jlssScope } : {}),
  };
  model.quantMetadata = metadata;
  return { metadata, blocks, seconds: (performance.now() - t0) / 1000 };
}

