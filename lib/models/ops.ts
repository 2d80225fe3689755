import type { LinearQuant } from '../quant/params.js';
import type { Tensor } from '../tensor/tensor.js';

/**
 * A row-major matrix view [rows, cols] with row stride ld, owned by an executor (host memory
 * on the CPU, device memory on CUDA). Column slices share storage.
 */
export interface Mat {
  readonly rows: number;
  readonly cols: number;
  readonly ld: number;
}

/** A linear layer of the graph: its FP weights and, once calibrated, its quantization. */
export interface LinearSite {
  readonly name: string;
  readonly weight: Tensor<'F32'>;
  readonly bias: Tensor<'F32'> | null;
  readonly inFeatures: number;
  readonly outFeatures: number;
  /**
   * True for the backward-branch linears (x_proj_b, dt_proj_b): their per-token activation
   * parameters are indexed in that branch's own, reversed token order (the file convention).
   */
  readonly reversedTokens: boolean;
  quant: LinearQuant | null;
}

/**
 * An activation on its way into a linear layer: the fp32 values, or the u8 values that a fused
 * producer already quantized for that linear (INT8 runtimes), or both.
 */
export interface Act<M extends Mat> {
  fp?: M;
  quantized?: unknown;
}

export interface ScanDirection<M extends Mat> {
  u: M;
  delta: M;
  B: M;
  C: M;
  /** −exp(A_log), [E, N] */
  A: Float32Array;
  D: Float32Array;
  deltaBias: Float32Array;
  reverse: boolean;
}

/** Observes named intermediates (tests compare them with the reference's taps; calibration collects statistics). */
export type TapFn<M extends Mat> = (name: string, value: M) => void;

/**
 * The operations a Vim-family graph is written in. One implementation per backend; the
 * precision of each linear is a property of its LinearSite (quant null → FP; otherwise the
 * executor runs it as real INT8 or as its simulation), so the graph itself is written once.
 * `next` names the linear that consumes an op's output, so INT8 executors can fuse the
 * quantization of that input into the producing op.
 */
export interface ModelOps<M extends Mat> {
  readonly device: 'cpu' | 'cuda';
  /** Human-readable precision of this executor ("fp32", "int8", "fake-quant", "fp16"). */
  readonly precision: string;
  alloc(rows: number, cols: number): M;
  colSlice(m: M, start: number, end: number): M;
  /** Host images [B, C, H, W] → patch tokens [B·G², D]. */
  patchEmbed(images: Tensor<'F32'>, weight: Tensor<'F32'>, bias: Tensor<'F32'>, stride: number): M;
  /** Patch tokens → [B·L, D]: class token inserted at clsPos of every image, then + pos_embed. */
  assembleTokens(patches: M, batch: number, clsToken: Tensor<'F32'>, posEmbed: Tensor<'F32'>, clsPos: number): M;
  /** residual' = x + residual (or x); normed = RMSNorm(residual')·weight. residual' may reuse residual's storage. */
  addNorm(x: M, residual: M | null, weight: Tensor<'F32'>, eps: number, next: LinearSite | null): { residual: M; normed: Act<M> };
  linear(x: Act<M>, site: LinearSite): M;
  /** silu(causal depthwise conv1d) of x, for the scan (fp) and for `next` (x_proj). */
  conv1dSilu(x: M, seqLen: number, weight: Tensor<'F32'>, bias: Tensor<'F32'>, reverse: boolean, next: LinearSite): Act<M> & { fp: M };
  /** Both scan directions with the SiLU(z) gate, combined as (y_f + y_b)/2, ready for `next` (out_proj). */
  bidirectionalScan(dirs: readonly [ScanDirection<M>, ScanDirection<M>], z: M, seqLen: number, next: LinearSite): Act<M>;
  /** Rows `clsPos + i·seqLen` for every image i: [B, cols]. */
  gatherRows(m: M, start: number, step: number, count: number): M;
  toHost(m: M): Float32Array;
  /** Buffers allocated inside a scope are recycled at its end, except those `keep` lives in. */
  beginScope(): void;
  endScope(keep: readonly (M | null)[]): void;
  /** Recycles everything allocated since the forward began (call after reading the results). */
  endForward(): void;
}

/**
 * One direction of a multi-directional scan over a token stream of `rows` rows per image:
 * scan step t reads row gather[t] (−1: a zero pad) and its output goes back to row scatter[t]
 * (−1: dropped). Built by lib/models/common/scan-order.ts (h, v, wK windows, flips; VMamba's
 * cross-scan is h, v, h_flip, v_flip). `identity`: gather = scatter = 0…rows−1.
 */
export interface TokenOrder {
  readonly name: string;
  readonly steps: number;
  readonly rows: number;
  readonly gather: Int32Array;
  readonly scatter: Int32Array;
  readonly identity: boolean;
}

/** Spatial size of a token-major feature map [B·H·W, C] (row-major pixels). */
export interface Grid {
  readonly H: number;
  readonly W: number;
}

/**
 * The operations of the other Visual Mamba backbones (LocalVim, VMamba, LocalVMamba), on top of
 * ModelOps. Feature maps stay token-major [B·H·W, C] throughout (VMamba's channel-first tensors
 * are the same maths transposed). Ops return new buffers and never modify their inputs, so a
 * caller (calibration, taps) may keep any intermediate. Directional scans are explicit: gather a
 * direction's sequence, run the projections and `selectiveScan` on it in the direction's own token
 * order (so per-token quantization parameters are indexed by that order), scatter it back.
 */
export interface BackboneOps<M extends Mat> extends ModelOps<M> {
  /** Rows of x [B·order.rows, C] in the direction's scan order, pads zero: [B·order.steps, C]. */
  gatherTokens(x: M, batch: number, order: TokenOrder): M;
  /**
   * out[b, scatter[t]] = (accumulate ? out[b, scatter[t]] : 0) + y[b, t] · gate[b] (gate [B, C],
   * null → 1); y is [B·order.steps, C], out [B·order.rows, C]; rows no step names are left as they are.
   */
  scatterTokens(y: M, batch: number, order: TokenOrder, out: M, accumulate: boolean, gate: M | null): void;
  /** LayerNorm over channels (eps inside the square root, biased variance). */
  layerNorm(x: M, weight: Tensor<'F32'>, bias: Tensor<'F32'> | null, eps: number, next: LinearSite | null): Act<M> & { fp: M };
  /** [B, C]: the mean over each image's rows of LayerNorm(row); with `select`, only rows whose order.scatter ≥ 0. */
  layerNormTokenMean(x: M, batch: number, weight: Tensor<'F32'>, bias: Tensor<'F32'> | null, eps: number, select: TokenOrder | null): M;
  /**
   * One forward selective scan over sequences of seqLen rows, gated by silu(z) when z is given: [B·seqLen, E].
   * `next` is the linear the output ends up in, possibly through FP32 ops in between (gathers,
   * gates, norms): an executor may compute the scan with the quantized path's math when `next`
   * is quantized, but must not quantize the output for it.
   */
  selectiveScan(dir: ScanDirection<M>, z: M | null, seqLen: number, next: LinearSite | null): Act<M> & { fp: M };
  /** GELU, exact erf form. */
  gelu(x: M, next: LinearSite | null): Act<M> & { fp: M };
  sigmoid(x: M): M;
  /** x · silu(z). */
  mulSilu(x: M, z: M, next: LinearSite | null): Act<M> & { fp: M };
  add(a: M, b: M): M;
  /** x [B·L, C] + table [L, C] (per position, every image). */
  addPositions(x: M, batch: number, table: Tensor<'F32'>): M;
  /** Rotary embedding of channel pairs with stored tables [L, C]. */
  rope(x: M, batch: number, cos: Tensor<'F32'>, sin: Tensor<'F32'>): M;
  /** Mean over each image's rows: [B, C]. */
  meanTokens(x: M, batch: number): M;
  /** Conv2d (square kernel, stride, zero padding) of host images [B, C, H, W] into tokens. */
  conv2dImages(images: Tensor<'F32'>, weight: Tensor<'F32'>, bias: Tensor<'F32'> | null, stride: number, pad: number): { out: M; grid: Grid };
  /** Conv2d of a token-major feature map. */
  conv2d(x: M, batch: number, grid: Grid, weight: Tensor<'F32'>, bias: Tensor<'F32'> | null, stride: number, pad: number): { out: M; grid: Grid };
  /** Depthwise conv2d, odd kernel, stride 1, same padding (weight [C, 1, K, K]), optionally followed by SiLU. */
  depthwiseConv2d(x: M, batch: number, grid: Grid, weight: Tensor<'F32'>, bias: Tensor<'F32'> | null, silu: boolean, next: LinearSite | null): Act<M> & { fp: M };
  /** Swin 2×2 patch merging: [B·H·W, C] → [B·⌈H/2⌉·⌈W/2⌉, 4C]. */
  patchMerge(x: M, batch: number, grid: Grid): { out: M; grid: Grid };
}
