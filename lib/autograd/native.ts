import { addon } from '../backend/addon.js';

/** Operands of one precision: Float32Array (fast path) or Float64Array (gradient checks). */
export type FloatArray = Float32Array | Float64Array;

/**
 * The native kernels of the autograd (native/binding/train_binding.cc, semantics in
 * native/include/ptq4vm/train.h). Every call takes operands of ONE float type, chosen by the first
 * array argument; matrices are contiguous token-major [rows, cols]. `*Backward` functions ADD into
 * their gradient outputs; a null gradient output is skipped. Bad arguments throw a one-line
 * TypeError/RangeError naming the function and the argument.
 */
export interface TrainKernels {
  /** C[M,N] (+)= op(A)·op(B); transA: A stored K×M; transB: B stored N×K. */
  trainGemm(transA: boolean, transB: boolean, M: number, N: number, K: number, A: FloatArray, lda: number,
    B: FloatArray, ldb: number, accumulate: boolean, C: FloatArray, ldc: number): void;
  /** out = [silu](causal depthwise conv1d(x)) over [B·L, E]; weight [E, K]. */
  trainConv1d(B: number, L: number, E: number, K: number, x: FloatArray, weight: FloatArray, bias: FloatArray | null,
    reverse: boolean, silu: boolean, out: FloatArray): void;
  trainConv1dBackward(B: number, L: number, E: number, K: number, x: FloatArray, weight: FloatArray,
    bias: FloatArray | null, reverse: boolean, silu: boolean, dout: FloatArray, dx: FloatArray): void;
  /** y (+)= outScale · selective scan (scan.h) with u, delta, z [B·L, E]; Bm, Cm [B·L, N]; A [E, N]. */
  trainScan(B: number, L: number, E: number, N: number, u: FloatArray, delta: FloatArray, A: FloatArray,
    Bm: FloatArray, Cm: FloatArray, D: FloatArray | null, z: FloatArray | null, deltaBias: FloatArray | null,
    softplus: boolean, reverse: boolean, outScale: number, accumulate: boolean, y: FloatArray): void;
  trainScanBackward(B: number, L: number, E: number, N: number, u: FloatArray, delta: FloatArray, A: FloatArray,
    Bm: FloatArray, Cm: FloatArray, D: FloatArray | null, z: FloatArray | null, deltaBias: FloatArray | null,
    softplus: boolean, reverse: boolean, outScale: number, dy: FloatArray, du: FloatArray | null,
    ddelta: FloatArray | null, dB: FloatArray | null, dC: FloatArray | null, dz: FloatArray | null): void;
  /** Activation fake quantizer, parameters per row % period (reversed when reversePeriod). */
  trainFakeQuantAct(rows: number, cols: number, period: number, reversePeriod: boolean, x: FloatArray,
    smooth: FloatArray | null, scale: FloatArray, zero: Int32Array, qmax: number, out: FloatArray): void;
  trainFakeQuantActBackward(rows: number, cols: number, period: number, reversePeriod: boolean, x: FloatArray,
    smooth: FloatArray | null, scale: FloatArray, zero: Int32Array, qmax: number, dout: FloatArray,
    dx: FloatArray | null, dsmooth: FloatArray | null, dscale: FloatArray | null): void;
  /** Weight fake quantizer [rows = out, cols = in], per output row. */
  trainFakeQuantWeight(rows: number, cols: number, w: FloatArray, smooth: FloatArray | null, scale: FloatArray,
    qmax: number, out: FloatArray): void;
  trainFakeQuantWeightBackward(rows: number, cols: number, w: FloatArray, smooth: FloatArray | null,
    scale: FloatArray, qmax: number, dout: FloatArray, dw: FloatArray | null, dsmooth: FloatArray | null,
    dscale: FloatArray | null): void;
  /** The int8 levels of the weight fake quantizer (float32 arithmetic of its forward). */
  trainWeightLevels(rows: number, cols: number, w: Float32Array, smooth: Float32Array | null, scale: Float32Array,
    qmax: number, levels: Int8Array): void;
}

let cached: TrainKernels | undefined;

export function trainKernels(): TrainKernels {
  if (cached) return cached;
  const a = addon();
  if (typeof a.trainScanBackward !== 'function') {
    throw new Error('ptq4vm: the native addon has no autograd kernels; rebuild it with "npm run build:addon"');
  }
  cached = a as unknown as TrainKernels;
  return cached;
}
