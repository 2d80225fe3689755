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
