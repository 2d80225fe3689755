import { addon } from '../backend/addon.js';

/** Operands of one precision: Float32Array (fast path) or Float64Array (gradient checks). */
export type FloatArray = Float32Array | Float64Array;

/**
 * The native kernels of the autograd (native/binding/train_binding.cc, semantics in
 * native/include/ptq4vm/train.h). Every call takes operands of ONE float type, chosen by the first
 * array argument; matrices are contiguous token-major [rows, cols]. `*Backward` functions ADD into
 * their gradient outputs (those with an `accumulate` flag overwrite them when it is false); a null
 * gradient output is skipped. Bad arguments throw a one-line
 * TypeError/RangeError naming the function and the argument.
 */
export interface TrainKernels {
  /** C[M,N] (+)= op(A)·op(B); transA: A stored K×M; transB: B stored N×K. */
  trainGemm(transA: boolean, transB: boolean, M: number, N: number, K: number, A: FloatArray, lda: number,
    B: FloatArray, ldb: number, accumulate: boolean, C: FloatArray, ldc: number): void;
  /**
   * out (+)= the INT8 product of quantized operands (gemm_int8.h): aLevels [M,K] u8 with per-row parameters
   * p = m % period (reversed: period − 1 − p), wLevels [N,K] int8 with wScale per row — the float product of the
   * fake-quantized values up to rounding, as the INT8 model computes it. K ≤ 32768.
   */
  trainGemmInt8(M: number, N: number, K: number, aLevels: Uint8Array, wLevels: Int8Array, period: number,
    reversePeriod: boolean, aScale: Float32Array, aZero: Int32Array, wScale: Float32Array, out: Float32Array,
    accumulate: boolean): void;
  /** out = [silu](causal depthwise conv1d(x)) over [B·L, E]; weight [E, K]. */
  trainConv1d(B: number, L: number, E: number, K: number, x: FloatArray, weight: FloatArray, bias: FloatArray | null,
    reverse: boolean, silu: boolean, out: FloatArray): void;
  /** dx (+)= ∂out/∂xᵀ · dout: added into when accumulate, else overwritten. */
  trainConv1dBackward(B: number, L: number, E: number, K: number, x: FloatArray, weight: FloatArray,
    bias: FloatArray | null, reverse: boolean, silu: boolean, dout: FloatArray, dx: FloatArray, accumulate: boolean): void;
  /** y (+)= outScale · selective scan (scan.h) with u, delta, z [B·L, E]; Bm, Cm [B·L, N]; A [E, N]. */
  trainScan(B: number, L: number, E: number, N: number, u: FloatArray, delta: FloatArray, A: FloatArray,
    Bm: FloatArray, Cm: FloatArray, D: FloatArray | null, z: FloatArray | null, deltaBias: FloatArray | null,
    softplus: boolean, reverse: boolean, outScale: number, accumulate: boolean, y: FloatArray): void;
  /**
   * y = (scan_0 + scan_1) · 0.5 · silu(z): direction 0 forward in time, 1 reversed, each with its own
   * operands (the Vim bidirectional combine, one native pass).
   */
  trainScanBidir(B: number, L: number, E: number, N: number,
    u0: FloatArray, delta0: FloatArray, A0: FloatArray, Bm0: FloatArray, Cm0: FloatArray, D0: FloatArray | null, deltaBias0: FloatArray | null,
    u1: FloatArray, delta1: FloatArray, A1: FloatArray, Bm1: FloatArray, Cm1: FloatArray, D1: FloatArray | null, deltaBias1: FloatArray | null,
    z: FloatArray, softplus: boolean, y: FloatArray): void;
  trainScanBackward(B: number, L: number, E: number, N: number, u: FloatArray, delta: FloatArray, A: FloatArray,
    Bm: FloatArray, Cm: FloatArray, D: FloatArray | null, z: FloatArray | null, deltaBias: FloatArray | null,
    softplus: boolean, reverse: boolean, outScale: number, dy: FloatArray, du: FloatArray | null,
    ddelta: FloatArray | null, dB: FloatArray | null, dC: FloatArray | null, dz: FloatArray | null, accumulate: boolean): void;
  /**
   * Gradients of y = outScale · (scan_0 + scan_1) · [silu(z)] (direction 0 forward in time, 1 reversed) in one
   * pass: the gate's terms once, dz written once. Every given output is added into when accumulate, else overwritten.
   */
  trainScanBidirBackward(B: number, L: number, E: number, N: number,
    u0: FloatArray, delta0: FloatArray, A0: FloatArray, Bm0: FloatArray, Cm0: FloatArray, D0: FloatArray | null, deltaBias0: FloatArray | null,
    u1: FloatArray, delta1: FloatArray, A1: FloatArray, Bm1: FloatArray, Cm1: FloatArray, D1: FloatArray | null, deltaBias1: FloatArray | null,
    z: FloatArray | null, softplus: boolean, outScale: number, dy: FloatArray,
    du0: FloatArray | null, ddelta0: FloatArray | null, dB0: FloatArray | null, dC0: FloatArray | null,
    du1: FloatArray | null, ddelta1: FloatArray | null, dB1: FloatArray | null, dC1: FloatArray | null,
    dz: FloatArray | null, accumulate: boolean): void;
  /**
   * Activation fake quantizer, parameters per row % period (reversed when reversePeriod); levels (qmax ≤ 255)
   * receives the integer levels, trainGemmInt8's operand.
   */
  trainFakeQuantAct(rows: number, cols: number, period: number, reversePeriod: boolean, x: FloatArray,
    smooth: FloatArray | null, scale: FloatArray, zero: Int32Array, qmax: number, out: FloatArray,
    levels: Uint8Array | null): void;
  trainFakeQuantActBackward(rows: number, cols: number, period: number, reversePeriod: boolean, x: FloatArray,
    smooth: FloatArray | null, scale: FloatArray, zero: Int32Array, qmax: number, dout: FloatArray,
    dx: FloatArray | null, dsmooth: FloatArray | null, dscale: FloatArray | null, accumulateDx: boolean): void;
  /** Weight fake quantizer [rows = out, cols = in], per output row. */
  trainFakeQuantWeight(rows: number, cols: number, w: FloatArray, smooth: FloatArray | null, scale: FloatArray,
    qmax: number, out: FloatArray): void;
  trainFakeQuantWeightBackward(rows: number, cols: number, w: FloatArray, smooth: FloatArray | null,
    scale: FloatArray, qmax: number, dout: FloatArray, dw: FloatArray | null, dsmooth: FloatArray | null,
    dscale: FloatArray | null): void;
  /** The int8 levels of the weight fake quantizer (float32 arithmetic of its forward). */
  trainWeightLevels(rows: number, cols: number, w: Float32Array, smooth: Float32Array | null, scale: Float32Array,
    qmax: number, levels: Int8Array): void;
  /** dst[r, dstCol + j] (+)= src[r, srcCol + j] for r < rows, j < cols (row strides ldSrc, ldDst). */
  trainCopyCols(rows: number, cols: number, src: FloatArray, ldSrc: number, srcCol: number, dst: FloatArray, ldDst: number,
    dstCol: number, accumulate: boolean): void;
  /**
   * mean over rows of 1 − cos(out_r, target_r), norms clamped below at eps; fills stats [3·rows]
   * (‖out_r‖, max(‖target_r‖, eps), cos_r) for the backward.
   */
  trainCosineLoss(rows: number, cols: number, out: FloatArray, target: FloatArray, eps: number, stats: Float64Array): number;
  /** dout (+)= g · ∂loss/∂out. */
  trainCosineLossBackward(rows: number, cols: number, out: FloatArray, target: FloatArray, eps: number, stats: Float64Array,
    g: number, dout: FloatArray, accumulate: boolean): void;
}

let cached: TrainKernels | undefined;

export function trainKernels(): TrainKernels {
  if (cached) return cached;
  const a = addon();
  if (typeof a.trainScanBackward !== 'function' || typeof a.trainCosineLoss !== 'function') {
    throw new Error('ptq4vm: the native addon has no autograd kernels; rebuild it with "npm run build:addon"');
  }
  cached = a as unknown as TrainKernels;
  return cached;
}
