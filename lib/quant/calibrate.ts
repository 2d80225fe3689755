import type { Act, LinearSite } from '../models/ops.js';
import { calibrationPlan, planUnits, type CalibrationPlan, type FpStep, type Stream, type UnitStep } from '../models/common/calibration-plan.js';
import type { AnyModel } from '../models/load.js';
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
  /** SmoothQuant migration strength α (default: the family's, 0.65 for VMamba, 0.5 otherwise). */
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
  /**
   * Images per JLSS forward/backward pass (gradients of the chunks add up, so each step is still
   * full batch). Default: Vim all at once; the other families as many as keep a pass near
   * JLSS_CHUNK_ROWS rows.
   */
  jlssChunkImages?: number;
  onProgress?: (e: CalibrationEvent) => void;
}

export type CalibrationEvent =
  | { kind: 'stats'; done: number; total: number }
  | { kind: 'block-start'; block: number; blocks: number }
  | { kind: 'jlss-step'; block: number; step: number; steps: number; loss: number }
  | { kind: 'block-done'; block: number; blocks: number; lossBefore: number; lossAfter: number; seconds: number };

export interface BlockReport {
  /** Index of the calibration unit (Vim, LocalVim: the layer; VMamba, LocalVMamba: the block, counted over stages). */
  block: number;
  /** The unit's name: `layers.i` (a mixer) or `layers.i.blocks.j` (a whole block). */
  name: string;
  /** mean(1 − cos) of the quantized unit output (mixer or block) against the FP target, before and after JLSS. */
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

/**
 * A CPU executor (fake-quant mode, so sites without `quant` run in FP) that shows `record` the
 * fp32 input of every linear it runs: how calibration sees each site's input, in the site's own
 * token order, whatever the graph around it.
 */
class RecordingExecutor extends CpuExecutor {
  constructor(private readonly record: (site: LinearSite, x: CpuMat) => void) {
    super({ quantMode: 'fake' });
  }

  override linear(x: Act<CpuMat>, site: LinearSite): CpuMat {
    if (x.fp) this.record(site, x.fp);
    return super.linear(x, site);
  }
}

/** Rows [i0, i1) of images out of N of every stream entry (views). */
function sliceStream(s: Stream, i0: number, i1: number, N: number): Stream {
  const out: Record<string, Float32Array> = {};
  for (const [k, a] of Object.entries(s)) {
    const per = a.length / N;
    out[k] = a.subarray(i0 * per, i1 * per);
  }
  return out;
}

/** Images [i0, i1) of a batch. */
function sliceImages(images: Tensor<'F32'>, i0: number, i1: number): Tensor<'F32'> {
  if (i0 === 0 && i1 === images.dim(0)) return images;
  const per = images.size / images.dim(0);
  return new Tensor('F32', [i1 - i0, ...images.shape.slice(1)], images.data.subarray(i0 * per, i1 * per));
}

/** Image ranges of at most `chunk` images (null: one range). */
function chunkRanges(N: number, chunk: number | null): [number, number][] {
  const per = chunk === null ? N : Math.max(1, chunk);
  const out: [number, number][] = [];
  for (let i0 = 0; i0 < N; i0 += per) out.push([i0, Math.min(N, i0 + per)]);
  return out;
}

/** An FP step over all N images, `chunk` at a time; results concatenated image-major. */
function runFpStep(ops: CpuExecutor, step: FpStep, s: Stream, images: Tensor<'F32'>, N: number, chunk: number | null): Stream {
  const ranges = chunkRanges(N, chunk);
  const parts = ranges.map(([i0, i1]) => {
    const r = step.run(ops, ranges.length === 1 ? s : sliceStream(s, i0, i1, N), sliceImages(images, i0, i1), i1 - i0);
    ops.endForward();
    return r;
  });
  if (parts.length === 1) return parts[0]!;
  const out: Record<string, Float32Array> = {};
  for (const k of Object.keys(parts[0]!)) {
    const total = parts.reduce((n, p) => n + p[k]!.length, 0);
    const a = new Float32Array(total);
    let o = 0;
    for (const p of parts) {
      a.set(p[k]!, o);
      o += p[k]!.length;
    }
    out[k] = a;
  }
  return out;
}

/** A unit over all N images' input rows, `chunk` images at a time: its output rows. */
function runUnit(ops: CpuExecutor, unit: UnitStep, input: Float32Array, N: number, chunk: number | null): Float32Array {
  const ranges = chunkRanges(N, chunk);
  const out = ranges.length === 1 ? null : new Float32Array(N * unit.rowsPerImage * unit.outCols);
  for (const [i0, i1] of ranges) {
    const n = i1 - i0, rows = n * unit.rowsPerImage;
    const x = ops.fromHost(input.subarray(i0 * unit.rowsPerImage * unit.inCols, i1 * unit.rowsPerImage * unit.inCols), rows, unit.inCols);
    const y = ops.toHost(unit.run(ops, { fp: x }, n));
    ops.endForward();
    if (!out) return y;
    out.set(y, i0 * unit.rowsPerImage * unit.outCols);
  }
  return out!;
}

/** The stream after a unit: its output replaces its input entry (or joins the stream). */
function advance(s: Stream, unit: UnitStep, out: Float32Array): Stream {
  const next: Record<string, Float32Array> = { ...s };
  delete next[unit.input];
  next[unit.output] = out;
  return next;
}

/** Per-input-channel max|x| of every quantizable linear's input over the calibration images (FP model), by site name. */
export function collectActivationMaxima(model: AnyModel, images: Tensor<'F32'>, batch: number, onProgress?: (e: CalibrationEvent) => void,
  plan: CalibrationPlan = calibrationPlan(model, images.dim(2), images.dim(3))): Map<string, Float32Array> {
  const wanted = new Set(planUnits(plan).flatMap((u) => u.sites.map((s) => s.site)));
  const maxima = new Map<string, Float32Array>();
  const ops = new RecordingExecutor((site, m) => {
    if (!wanted.has(site)) return;
    let acc = maxima.get(site.name);
    if (!acc) maxima.set(site.name, (acc = new Float32Array(m.cols)));
    for (let r = 0; r < m.rows; r++) {
      const row = m.data.subarray(r * m.ld, r * m.ld + m.cols);
      for (let j = 0; j < m.cols; j++) {
        const a = Math.abs(row[j]!);
        if (a > acc[j]!) acc[j] = a;
      }
    }
  });
  const N = images.dim(0);
  for (let start = 0; start < N; start += batch) {
    const n = Math.min(batch, N - start);
    const x = sliceImages(images, start, start + n);
    let s: Stream = {};
    for (const step of plan.steps) {
      if (step.kind === 'fp') s = runFpStep(ops, step, s, x, n, null);
      else s = advance(s, step, runUnit(ops, step, s[step.input]!, n, null));
    }
    onProgress?.({ kind: 'stats', done: start + n, total: N });
  }
  return maxima;
}

/** Each site's input rows on a stream (the unit in FP: its sites have no quant yet). */
function captureInputs(unit: UnitStep, input: Float32Array, N: number, chunk: number | null): Map<LinearSite, Float32Array> {
  const wanted = new Set(unit.sites.map((s) => s.site));
  const parts = new Map<LinearSite, Float32Array[]>();
  const ops = new RecordingExecutor((site, m) => {
    if (!wanted.has(site)) return;
    let list = parts.get(site);
    if (!list) parts.set(site, (list = []));
    list.push(ops.toHost(m));
  });
  runUnit(ops, unit, input, N, chunk);
  const out = new Map<LinearSite, Float32Array>();
  for (const [site, list] of parts) {
    if (list.length === 1) {
      out.set(site, list[0]!);
      continue;
    }
    const a = new Float32Array(list.reduce((n, p) => n + p.length, 0));
    let o = 0;
    for (const p of list) {
      a.set(p, o);
      o += p.length;
    }
    out.set(site, a);
  }
  return out;
}

/** Rows per JLSS pass the default chunking aims at for the non-Vim families (bounds the tape's memory). */
export const JLSS_CHUNK_ROWS = 16384;

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
  // L: the site's tokens per image (its per-token parameter count).
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
 * unit by unit (lib/models/common/calibration-plan.ts: a Vim/LocalVim mixer, a VMamba/LocalVMamba
 * block): unit i is initialised (and, for PTQ4VM, trained by JLSS) on the output of the
 * already-quantized units 0..i−1, against the FP unit's output on the FP stream. Images are
 * [N, C, H, W]; VMamba and LocalVMamba calibrate for that H×W (recorded in the metadata, which
 * fixes the input size of the quantized model).
 */
export function calibrate(model: AnyModel, images: Tensor<'F32'>, options: CalibrateOptions): CalibrationReport {
  const t0 = performance.now();
  const plan = calibrationPlan(model, images.dim(2), images.dim(3));
  const opts = {
    method: options.method, wbits: options.wbits, abits: options.abits, onProgress: options.onProgress,
    steps: options.steps ?? 100, alpha: options.alpha ?? plan.alpha, seed: options.seed ?? 0, jlssScope: options.jlssScope ?? 'all',
    lrSmooth: options.lrSmooth ?? 1e-2, lrStep: options.lrStep ?? 5e-4, weightDecay: options.weightDecay ?? 1e-5,
    clipNorm: options.clipNorm ?? 2.0, searchSampleCap: options.searchSampleCap ?? 16384,
    granularity: options.granularity ?? (SEARCHED.has(options.method) ? 'per-token-static' : 'per-tensor-static'),
  };
  const units = planUnits(plan);
  for (const u of units) for (const { site } of u.sites) site.quant = null;
  model.quantMetadata = null;
  const N = images.dim(0);
  const actMax = SMOOTHED.has(opts.method) ? collectActivationMaxima(model, images, 64, opts.onProgress, plan) : new Map<string, Float32Array>();

  const fpOps = new CpuExecutor({ quantMode: 'fake' });
  const qOps = new CpuExecutor({ quantMode: 'fake' });
  let fpStream: Stream = {};
  let qStream: Stream = {};
  const blocks: BlockReport[] = [];
  for (const step of plan.steps) {
    if (step.kind === 'fp') {
      // Until the first unit both streams are the same (host arrays are never written in place).
      const shared = fpStream === qStream;
      fpStream = runFpStep(fpOps, step, fpStream, images, N, plan.chunk);
      qStream = shared ? fpStream : runFpStep(qOps, step, qStream, images, N, plan.chunk);
      continue;
    }
    const unit = step;
    const i = blocks.length;
    const tb = performance.now();
    opts.onProgress?.({ kind: 'block-start', block: i, blocks: units.length });
    const rows = N * unit.rowsPerImage;
    // FP stream: the target is the FP unit's output.
    const target = runUnit(fpOps, unit, fpStream[unit.input]!, N, plan.chunk);
    // Quantized stream: each linear's input with the unit still in FP initialises its quantizer.
    const qInput = qStream[unit.input]!;
    const inputs = captureInputs(unit, qInput, N, plan.chunk);
    for (const { site, tokens } of unit.sites) {
      const input = inputs.get(site);
      if (!input) throw new Error(`calibrate: ${unit.name} never ran ${site.name}`);
      site.quant = initSiteQuant({ site, input }, actMax.get(site.name), opts, tokens);
    }
    inputs.clear();
    const runQuantized = (): Float32Array => runUnit(qOps, unit, qInput, N, plan.chunk);
    let qOut = runQuantized();
    const lossBefore = cosineLoss(qOut, target, rows, unit.outCols);
    let lossAfter = lossBefore;
    let lossCurve: number[] = [];
    if (opts.method === 'ptq4vm' && opts.steps > 0) {
      const inout = (s: LinearSite) => /(^|\.)(in_proj|out_proj)$/.test(s.name);
      const sites = unit.sites.map((s) => s.site);
      const chunkImages = options.jlssChunkImages ?? (plan.chunk === null ? N : Math.max(1, Math.floor(JLSS_CHUNK_ROWS / unit.rowsPerImage)));
      const result: JlssResult = runJlss({
        name: unit.name, run: (ops, x, batch) => unit.run(ops, x, batch), sites,
        trainable: new Set(opts.jlssScope === 'inout' ? sites.filter(inout) : sites),
        input: qInput, target, images: N, rowsPerImage: unit.rowsPerImage, inCols: unit.inCols, outCols: unit.outCols, chunkImages,
        steps: opts.steps, lrSmooth: opts.lrSmooth, lrStep: opts.lrStep, weightDecay: opts.weightDecay, clipNorm: opts.clipNorm,
        keepBest: plan.jlssKeepBest,
        onStep: (s, loss) => opts.onProgress?.({ kind: 'jlss-step', block: i, step: s, steps: opts.steps, loss }),
      });
      lossCurve = result.losses;
      qOut = runQuantized();
      lossAfter = cosineLoss(qOut, target, rows, unit.outCols);
    }
    fpStream = advance(fpStream, unit, target);
    qStream = advance(qStream, unit, qOut);
    const seconds = (performance.now() - tb) / 1000;
    blocks.push({ block: i, name: unit.name, lossBefore, lossAfter, lossCurve, seconds });
    opts.onProgress?.({ kind: 'block-done', block: i, blocks: units.length, lossBefore, lossAfter, seconds });
  }
  const metadata: QuantMetadata = {
    method: opts.method, wbits: opts.wbits, abits: opts.abits, granularity: opts.granularity, weight_granularity: 'per-channel',
    calib_size: N, seed: opts.seed,
    ...(SMOOTHED.has(opts.method) ? { alpha: opts.alpha } : {}),
    ...(opts.method === 'ptq4vm' ? { steps: opts.steps, jlss_scope: opts.jlssScope } : {}),
    ...(plan.family === 'vmamba' || plan.family === 'localvmamba' ? { input_size: [plan.inputSize.H, plan.inputSize.W] as [number, number] } : {}),
  };
  model.quantMetadata = metadata;
  return { metadata, blocks, seconds: (performance.now() - t0) / 1000 };
}
