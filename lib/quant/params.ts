/**
 * The quantization state of one linear layer, as stored in a quantized model file and as the
 * runtimes consume it. Weights: symmetric per output channel, σ folded in. Activations:
 * asymmetric u8, divided by σ first, with parameters indexed by row % period (see
 * native/include/ptq4vm/quantize.h).
 */
export type ActGranularity = 'per-token-static' | 'per-tensor-static' | 'per-token-dynamic';

export interface LinearQuant {
  wbits: number;
  abits: number;
  granularity: ActGranularity;
  /** [out, in] int8 levels in ±(2^(wbits−1)−1) of W·diag(σ). */
  qweight: Int8Array;
  /** [out] weight step sizes. */
  wscale: Float32Array;
  /** [in] smoothing factors σ (activations are divided by them). */
  smooth: Float32Array;
  /** [period] activation step sizes (empty for per-token dynamic). */
  actScale: Float32Array;
  /** [period] activation zero points in [0, 2^abits − 1] (empty for per-token dynamic). */
  actZero: Int32Array;
}

export function wQmax(bits: number): number {
  return 2 ** (bits - 1) - 1;
}

export function aQmax(bits: number): number {
  return 2 ** bits - 1;
}

/** Period of the activation parameters: L for per-token static, 1 per-tensor, 0 dynamic. */
export function actPeriod(q: LinearQuant): number {
  return q.actScale.length;
}

/**
 * Per-token parameters in original token order. A backward-branch site stores them in its own,
 * reversed order (the file convention); executors that run that branch in original order use
 * this. Per-tensor (period 1) and dynamic (empty) parameters come back unchanged.
 */
export function paramsInOriginalOrder(q: LinearQuant, reversedTokens: boolean): { scale: Float32Array; zero: Int32Array } {
  if (!reversedTokens || q.actScale.length <= 1) return { scale: q.actScale, zero: q.actZero };
  return { scale: q.actScale.slice().reverse(), zero: q.actZero.slice().reverse() };
}
