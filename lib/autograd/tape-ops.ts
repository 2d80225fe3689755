import type { Act, BackboneOps, Grid, LinearSite, Mat, ScanDirection, TokenOrder } from '../models/ops.js';
import type { Tensor } from '../tensor/tensor.js';
import type { FloatArray } from './native.js';
import type { Tape } from './tape.js';
import { toPrecision, Var, type Precision } from './var.js';

/** A tape value seen as a matrix of the model graph (dense: ld = cols). */
export interface TapeMat extends Mat {
  readonly v: Var;
}

export function tapeMat(v: Var): TapeMat {
  if (v.shape.length !== 2) throw new RangeError(`autograd: graph values are matrices, got shape [${v.shape.join(', ')}]`);
  return { v, rows: v.shape[0]!, cols: v.shape[1]!, ld: v.shape[1]! };
}

/** Column slices of a linear's output at least this wide are computed as GEMMs of their own. */
const MIN_SPLIT_COLS = 64;

/**
 * Fake quantization of one linear on the tape: x/σ quantized per token (asymmetric), W·σ per
 * output row (symmetric). Vars made with Var.param are trained (JLSS), Var.constant ones are not;
 * the same σ Var feeds both quantizers, so its gradient comes from both.
 */
export interface LinearFakeQuant {
  /** σ [in], or null for no smoothing. */
  smooth: Var | null;
  /** Weight step sizes [out]. */
  wscale: Var;
  wqmax: number;
  /** Activation step sizes and zero points [period], in the site's own token order. */
  ascale: Var;
  azero: Int32Array;
  aqmax: number;
  period: number;
  /** Parameters indexed by period − 1 − row % period (the backward branch's reversed token order). */
  reversePeriod?: boolean;
}

export interface TapeExecutorOptions {
  precision?: Precision;
  /** Linears to fake-quantize, with their (trainable or fixed) quantizer parameters. */
  quant?: ReadonlyMap<LinearSite, LinearFakeQuant>;
  /** Weight Vars to use instead of the sites' FP32 tensors (float64 checks, trainable weights). */
  weights?: ReadonlyMap<LinearSite, Var>;
}

/**
 * The model graph's ops on the autograd tape, so JLSS trains exactly the forward that inference
 * runs (lib/models/<family>/graph.ts), not a second copy of it. Covers what JLSS trains: the Vim and
 * LocalVim mixers (from their normalized input) and the VMamba / LocalVMamba blocks (LayerNorms,
 * scans, channel gates, MLP and residuals included). Embeddings, stems, patch merging, RoPE and
 * the heads are not differentiated and throw.
 */
export class TapeExecutor implements BackboneOps<TapeMat> {
  readonly device = 'cpu' as const;
  readonly precision: string;
  private readonly tape: Tape;
  private readonly p: Precision;
  private readonly quant: ReadonlyMap<LinearSite, LinearFakeQuant>;
  private readonly weights: ReadonlyMap<LinearSite, Var>;
  private readonly weightVars = new WeakMap<LinearSite, Var>();
  private readonly constants = new WeakMap<Float32Array, FloatArray>();
  /** Outputs of linear() not computed yet: the (fake-quantized) input and weight. */
  private readonly pendingLinears = new WeakMap<TapeMat, { x: Var; w: Var; done: () => boolean }>();
  /** Buffers from alloc(): scatterTokens writes into them by replacing their value. */
  private readonly buffers = new WeakSet<TapeMat>();

  constructor(tape: Tape, opts: TapeExecutorOptions = {}) {
    this.tape = tape;
    this.p = opts.precision ?? 'f32';
    this.quant = opts.quant ?? new Map();
    this.weights = opts.weights ?? new Map();
    this.precision = `tape-${this.p}`;
  }

  /** A frozen constant in the tape's precision (float32 arrays are used as they are). */
  constant(a: Float32Array): FloatArray {
    if (this.p === 'f32') return a;
    let c = this.constants.get(a);
    if (!c) this.constants.set(a, (c = toPrecision(a, this.p)));
    return c;
  }

  private weightOf(site: LinearSite): Var {
    const given = this.weights.get(site);
    if (given) return given;
    let w = this.weightVars.get(site);
    if (!w) this.weightVars.set(site, (w = Var.constant(this.constant(site.weight.data), [site.outFeatures, site.inFeatures])));
    return w;
  }

  /** A zero matrix that scatterTokens may write into (its `v` is replaced by each write). */
  alloc(rows: number, cols: number): TapeMat {
    const m: { v: Var; rows: number; cols: number; ld: number } = {
      v: Var.constant(toPrecision(new Float32Array(rows * cols), this.p), [rows, cols]), rows, cols, ld: cols,
    };
    this.buffers.add(m);
    return m;
  }

  colSlice(m: TapeMat, start: number, end: number): TapeMat {
    const p = this.pendingLinears.get(m);
    if (p && !p.done() && end - start >= MIN_SPLIT_COLS) {
      // Only these output columns of a linear nobody has read whole: a GEMM over the weight's
      // rows [start, end) writes them densely (no copy of the output, nor of its gradient).
      return tapeMat(this.tape.matmulNT(p.x, this.tape.sliceRows(p.w, start, end)));
    }
    return tapeMat(this.tape.sliceCols(m.v, start, end));
  }

  linear(x: Act<TapeMat>, site: LinearSite): TapeMat {
    if (!x.fp) throw new Error(`${site.name}: the tape needs the floating-point input`);
    let a = x.fp.v;
    let w = this.weightOf(site);
    const q = this.quant.get(site);
    if (q) {
      a = this.tape.fakeQuantAct(a, q.smooth, q.ascale, { zero: q.azero, qmax: q.aqmax, period: q.period, reversePeriod: q.reversePeriod ?? false });
      w = this.tape.fakeQuantWeight(w, q.smooth, q.wscale, { qmax: q.wqmax });
    }
    if (site.bias) return tapeMat(this.tape.addRowBias(this.tape.matmulNT(a, w), this.constant(site.bias.data)));
    // Deferred: the graph may read the output only through column slices (in_proj's x and z).
    const tape = this.tape;
    let out: Var | null = null;
    const m: TapeMat = {
      rows: a.shape[0]!, cols: w.shape[0]!, ld: w.shape[0]!,
      get v(): Var {
        return (out ??= tape.matmulNT(a, w));
      },
    };
    this.pendingLinears.set(m, { x: a, w, done: () => out !== null });
    return m;
  }

  conv1dSilu(x: TapeMat, seqLen: number, weight: Tensor<'F32'>, bias: Tensor<'F32'>, reverse: boolean): Act<TapeMat> & { fp: TapeMat } {
    return { fp: tapeMat(this.tape.conv1dSilu(x.v, seqLen, this.constant(weight.data), this.constant(bias.data), reverse)) };
  }

  bidirectionalScan(dirs: readonly [ScanDirection<TapeMat>, ScanDirection<TapeMat>], z: TapeMat, seqLen: number): Act<TapeMat> {
    const dir = (d: ScanDirection<TapeMat>) => ({
      u: d.u.v, delta: d.delta.v, B: d.B.v, C: d.C.v, A: this.constant(d.A), D: this.constant(d.D),
      deltaBias: this.constant(d.deltaBias), softplus: true, reverse: d.reverse,
    });
    return { fp: tapeMat(this.tape.bidirectionalScan(dir(dirs[0]), dir(dirs[1]), z.v, seqLen)) };
  }

  // ---- the other backbones' ops (BackboneOps)

  gatherTokens(x: TapeMat, batch: number, order: TokenOrder): TapeMat {
    return tapeMat(this.tape.gatherTokens(x.v, batch, order.gather));
  }

  scatterTokens(y: TapeMat, batch: number, order: TokenOrder, out: TapeMat, accumulate: boolean, gate: TapeMat | null): void {
    if (!this.buffers.has(out)) throw new Error('TapeExecutor: scatterTokens writes only into buffers from alloc()');
    (out as { v: Var }).v = this.tape.scatterTokens(y.v, batch, order.rows, order.scatter, out.v, accumulate, gate ? gate.v : null);
  }

  layerNorm(x: TapeMat, weight: Tensor<'F32'>, bias: Tensor<'F32'> | null, eps: number): Act<TapeMat> & { fp: TapeMat } {
    return { fp: tapeMat(this.tape.layerNorm(x.v, this.constant(weight.data), bias ? this.constant(bias.data) : null, eps)) };
  }

  layerNormTokenMean(x: TapeMat, batch: number, weight: Tensor<'F32'>, bias: Tensor<'F32'> | null, eps: number, select: TokenOrder | null): TapeMat {
    return tapeMat(this.tape.layerNormTokenMean(x.v, batch, select ? select.scatter : null, this.constant(weight.data),
      bias ? this.constant(bias.data) : null, eps));
  }

  selectiveScan(d: ScanDirection<TapeMat>, z: TapeMat | null, seqLen: number): Act<TapeMat> & { fp: TapeMat } {
    return {
      fp: tapeMat(this.tape.selectiveScan(d.u.v, d.delta.v, d.B.v, d.C.v, z ? z.v : null, {
        A: this.constant(d.A), D: this.constant(d.D), deltaBias: this.constant(d.deltaBias), softplus: true, reverse: d.reverse, seqLen,
      })),
    };
  }

  gelu(x: TapeMat): Act<TapeMat> & { fp: TapeMat } {
    return { fp: tapeMat(this.tape.gelu(x.v)) };
  }

  sigmoid(x: TapeMat): TapeMat {
    return tapeMat(this.tape.sigmoid(x.v));
  }

  mulSilu(x: TapeMat, z: TapeMat): Act<TapeMat> & { fp: TapeMat } {
    return { fp: tapeMat(this.tape.mul(x.v, this.tape.silu(z.v))) };
  }

  add(a: TapeMat, b: TapeMat): TapeMat {
    return tapeMat(this.tape.add(a.v, b.v));
  }

  depthwiseConv2d(x: TapeMat, batch: number, grid: Grid, weight: Tensor<'F32'>, bias: Tensor<'F32'> | null, silu: boolean): Act<TapeMat> & { fp: TapeMat } {
    return {
      fp: tapeMat(this.tape.depthwiseConv2d(x.v, batch, grid.H, grid.W, this.constant(weight.data), bias ? this.constant(bias.data) : null, silu)),
    };
  }

  addPositions(): TapeMat {
    throw new Error('TapeExecutor: position embeddings are not differentiated');
  }
  rope(): TapeMat {
    throw new Error('TapeExecutor: RoPE is not differentiated');
  }
  meanTokens(): TapeMat {
    throw new Error('TapeExecutor: token pooling is not differentiated');
  }
  conv2dImages(): { out: TapeMat; grid: Grid } {
    throw new Error('TapeExecutor: the stem is not differentiated');
  }
  conv2d(): { out: TapeMat; grid: Grid } {
    throw new Error('TapeExecutor: conv2d (stems, downsampling) is not differentiated');
  }
  patchMerge(): { out: TapeMat; grid: Grid } {
    throw new Error('TapeExecutor: patch merging is not differentiated');
  }

  toHost(m: TapeMat): Float32Array {
    return m.v.data instanceof Float32Array ? m.v.data.slice() : Float32Array.from(m.v.data);
  }

  patchEmbed(): TapeMat {
    throw new Error('TapeExecutor: patch embedding is not differentiated');
  }
  assembleTokens(): TapeMat {
    throw new Error('TapeExecutor: token assembly is not differentiated');
  }
  addNorm(): { residual: TapeMat; normed: Act<TapeMat> } {
    throw new Error('TapeExecutor: add+RMSNorm is not differentiated (JLSS starts from the normalized block input)');
  }
  gatherRows(): TapeMat {
    throw new Error('TapeExecutor: row gathering is not differentiated');
  }
  beginScope(): void {}
  endScope(): void {}
  endForward(): void {}
}
