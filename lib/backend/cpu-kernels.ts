import { addon } from './addon.js';

/**
 * The CPU kernels of the native addon, typed. All calls are synchronous and validate every
 * length, stride and dimension natively (a bad call throws a one-line TypeError/RangeError
 * naming the function and the argument). Matrices are row-major with an explicit row stride
 * (`ld*`, in elements); an operand starting inside a wider buffer is passed as a subarray view.
 * Outputs never alias inputs except where a method says so.
 */

/** Arguments of `selectiveScanF32` (semantics: native/include/ptq4vm/scan.h). */
export interface ScanF32Args {
  B: number;
  L: number;
  E: number;
  N: number;
  u: Float32Array;
  ldu: number;
  /** Not read (may be omitted) with dtProj or dtProjF32. */
  delta?: Float32Array;
  lddelta?: number;
  /** Δ from dt_proj's quantized input instead of `delta` (as a selectiveScanBidirF32 direction's). */
  dtProj?: ScanDtProjInt8;
  /** Δ from dt_proj's fp32 input instead of `delta` (not with dtProj). */
  dtProjF32?: ScanDtProjF32;
  /** [E, N], already −exp(A_log). */
  A: Float32Array;
  Bm: Float32Array;
  ldB: number;
  Cm: Float32Array;
  ldC: number;
  D?: Float32Array | null;
  z?: Float32Array | null;
  /** Required when z is given. */
  ldz?: number;
  deltaBias?: Float32Array | null;
  /** Default true. */
  deltaSoftplus?: boolean;
  /** Default false. */
  reverse?: boolean;
  /** Default false: y is overwritten; true: y += outScale · o. */
  accumulate?: boolean;
  /** Default 1. */
  outScale?: number;
  y: Float32Array;
  ldy: number;
  /** Default 'exact': softplus, SiLU(z) and the decays (MathMode; the reference is always exact). */
  math?: MathMode;
}

/**
 * dt_proj as an INT8 linear computed inside `selectiveScanF32` / `selectiveScanBidirF32`
 * (ScanDtProjInt8 in native/include/ptq4vm/scan.h): Δ equals, bit for bit, what `gemmU8S8F32(rows, E, R, q,
 * ldq, pack(qweight), aScale, aZero, period, wScale, null, false, Δ, E)` writes, but is never
 * stored. Rows of q are b·L + t in original token order.
 */
export interface ScanDtProjInt8 {
  /** dt_rank, 1..512. */
  R: number;
  q: Uint8Array;
  ldq: number;
  period: number;
  aScale: Float32Array;
  /** 0..255 */
  aZero: Int32Array;
  /** [E, R] */
  qweight: Int8Array;
  /** [E] */
  wScale: Float32Array;
}

/**
 * dt_proj as an FP32 linear computed inside `selectiveScanF32` / `selectiveScanBidirF32`
 * (ScanDtProjF32 in native/include/ptq4vm/scan.h): Δ[row, e] = Σ_r x[row·ldx + r]·weight[e·R + r], never
 * stored; equal to `gemmF32(false, true, rows, E, R, x, ldx, weight, R, null, false, Δ, E)` to
 * float rounding (the sum runs in another order).
 */
export interface ScanDtProjF32 {
  /** dt_rank, 1..512. */
  R: number;
  /** [B·L, R] with row stride ldx: dt_proj's input. */
  x: Float32Array;
  ldx: number;
  /** [E, R] */
  weight: Float32Array;
}

/** One scan direction's operands for `selectiveScanBidirF32`, all in original token order. */
export interface ScanDirectionF32 {
  u: Float32Array;
  ldu: number;
  /** Not read (may be omitted) with dtProj or dtProjF32. */
  delta?: Float32Array;
  lddelta?: number;
  /** Δ from dt_proj's quantized input instead of `delta`. */
  dtProj?: ScanDtProjInt8;
  /** Δ from dt_proj's fp32 input instead of `delta` (not with dtProj). */
  dtProjF32?: ScanDtProjF32;
  /** [E, N], already −exp(A_log). */
  A: Float32Array;
  Bm: Float32Array;
  ldB: number;
  Cm: Float32Array;
  ldC: number;
  D?: Float32Array | null;
  deltaBias?: Float32Array | null;
}

/**
 * Per-token activation quantizer (native/include/ptq4vm/token_quant.h): row r uses p = r % period,
 * q = clamp(roundHalfEven((x·invSmooth[j])·invScale[p]) + zero[p], 0, qmax), zero[p] in [0, qmax].
 * For a backward-branch linear whose parameters are indexed in the flipped token order, pass the
 * parameter arrays reversed: the kernels index rows in original token order.
 */
export interface TokenQuantizer {
  period: number;
  invSmooth?: Float32Array | null;
  invScale: Float32Array;
  zero: Int32Array;
  qmax: number;
}

/**
 * Arguments of `selectiveScanBidirF32` (native/include/ptq4vm/scan_bidir.h): both directions,
 * combined as (o_fwd + o_bwd)·0.5·SiLU(z), written to y (fp32) and/or q (quantized for out_proj).
 */
export interface ScanBidirF32Args {
  B: number;
  L: number;
  E: number;
  N: number;
  fwd: ScanDirectionF32;
  bwd: ScanDirectionF32;
  z: Float32Array;
  ldz: number;
  /** Default true. */
  deltaSoftplus?: boolean;
  y?: Float32Array | null;
  ldy?: number;
  q?: Uint8Array | null;
  ldq?: number;
  /** Required with q. */
  quant?: TokenQuantizer;
  /**
   * How softplus, SiLU and the decays are evaluated (MathMode, default 'exact'). The `…Ref`
   * function ignores it.
   */
  math?: MathMode;
}

/**
 * How a kernel of the quantized path evaluates its transcendental functions (MathMode in
 * native/include/ptq4vm/math_mode.h): 'exact' (≤ 3 ulp, the FP32 path) or 'fast' (relative
 * error ≤ 1.1e-4 each, for the quantized path, whose values are rounded to 8 bits soon after;
 * AVX-512 builds only, elsewhere exact).
 */
export type MathMode = 'exact' | 'fast';

/** INT8 weights packed once for the CPU INT8 GEMM (an opaque native handle; freed by GC). */
export interface PackedInt8 {
  readonly __packedInt8: unique symbol;
}

export interface CpuFeatureFlags {
  avx2: boolean;
  fma: boolean;
  f16c: boolean;
  avx512f: boolean;
  avx512bw: boolean;
  avx512dq: boolean;
  avx512vl: boolean;
  avx512vnni: boolean;
  avxvnni: boolean;
}

export type CpuIsa = 'scalar' | 'avx2' | 'avx512' | 'avx512vnni';

export interface CpuRuntimeInfo {
  /** The ISA kernels dispatch to now (PTQ4VM_ISA or setIsa may lower it). */
  isa: CpuIsa;
  /** The highest ISA this CPU and OS support. */
  detectedIsa: CpuIsa;
  features: CpuFeatureFlags;
  /** Thread-pool size (PTQ4VM_THREADS or the online CPUs unless setThreads changed it). */
  threads: number;
}

export interface CpuKernels {
  /** C[M,N] = op(A)·op(B) + bias (+ C if accumulate). transB: B stored [N,K] (a linear weight). */
  gemmF32(transA: boolean, transB: boolean, M: number, N: number, K: number, A: Float32Array, lda: number,
    B: Float32Array, ldb: number, bias: Float32Array | null, accumulate: boolean, C: Float32Array, ldc: number): void;
  /**
   * residualOut = x + residualIn; out = residualOut · rsqrt(mean(residualOut²) + eps) · weight, per row of D.
   * residualOut may be residualIn (or x); out may be x (or residualIn), never residualOut.
   */
  addRmsNormF32(rows: number, D: number, x: Float32Array, residualIn: Float32Array | null, residualOut: Float32Array,
    weight: Float32Array, eps: number, out: Float32Array): void;
  /**
   * Causal depthwise conv over tokens of [B, L, E] (weight [E, K]); reverse runs it from the end.
   * siluMath: how SiLU is evaluated (see MathMode; the `…Ref` function ignores it).
   */
  causalConv1dF32(B: number, L: number, E: number, K: number, x: Float32Array, ldx: number, weight: Float32Array,
    bias: Float32Array | null, reverse: boolean, applySilu: boolean, out: Float32Array, ldo: number, siluMath: MathMode): void;
  selectiveScanF32(args: ScanF32Args): void;
  /** Conv2d(C → D, kernel P, stride S) of img [B, C, H, W] into tokens out [B, Gh·Gw, D]. */
  patchEmbedF32(B: number, C: number, H: number, W: number, P: number, S: number, img: Float32Array,
    weight: Float32Array, bias: Float32Array | null, D: number, out: Float32Array): void;

  /**
   * Per-token asymmetric quantization (native/include/ptq4vm/quantize.h), parameters indexed by
   * row % period: q = clamp(roundHalfEven((x·invSmooth)·invScale) + zero, 0, qmax).
   */
  quantizeU8(rows: number, cols: number, period: number, x: Float32Array, ldx: number, invSmooth: Float32Array | null,
    invScale: Float32Array, zero: Int32Array, qmax: number, q: Uint8Array, ldq: number): void;
  /** Per-row dynamic parameters of x·invSmooth (range always includes 0): writes scale, invScale, zero. */
  quantizeParamsDynamic(rows: number, cols: number, x: Float32Array, ldx: number, invSmooth: Float32Array | null,
    qmax: number, scale: Float32Array, invScale: Float32Array, zero: Int32Array): void;

  /** Packs int8 weights [N, K] (levels ±127, or ±7 for 4-bit; K ≤ 32768) for gemmU8S8*. */
  packInt8Weights(N: number, K: number, qw: Int8Array): PackedInt8;
  packedInt8Shape(W: PackedInt8): { N: number; K: number };
  /**
   * C[M,N] (+)= fma((float)(acc − aZero[p]·Σ_k qw[n,k])·aScale[p], wScale[n], bias[n] or 0), p = m % period,
   * acc = Σ_k A[m,k]·qw[n,k] exactly (u8 × s8 → s32); aZero in [0, 255].
   */
  gemmU8S8F32(M: number, N: number, K: number, A: Uint8Array, lda: number, W: PackedInt8, aScale: Float32Array,
    aZero: Int32Array, period: number, wScale: Float32Array, bias: Float32Array | null, accumulate: boolean,
    C: Float32Array, ldc: number): void;
  /** The raw accumulators acc[m,n] = Σ_k A[m,k]·qw[n,k]. */
  gemmU8S8S32(M: number, N: number, K: number, A: Uint8Array, lda: number, W: PackedInt8, C: Int32Array, ldc: number): void;
  gemmU8S8F32Ref(M: number, N: number, K: number, A: Uint8Array, lda: number, qw: Int8Array, aScale: Float32Array,
    aZero: Int32Array, period: number, wScale: Float32Array, bias: Float32Array | null, accumulate: boolean,
    C: Float32Array, ldc: number): void;
  gemmU8S8S32Ref(M: number, N: number, K: number, A: Uint8Array, lda: number, qw: Int8Array, C: Int32Array, ldc: number): void;

  /**
   * addRmsNormF32 plus quantization of the normalized rows into q (in_proj's input); out may be null
   * (then only q is written). Aliasing as addRmsNormF32.
   */
  addRmsNormQuantizeF32(rows: number, D: number, x: Float32Array, residualIn: Float32Array | null,
    residualOut: Float32Array, weight: Float32Array, eps: number, out: Float32Array | null, period: number,
    invSmooth: Float32Array | null, invScale: Float32Array, zero: Int32Array, qmax: number, q: Uint8Array, ldq: number): void;
  /** causalConv1dF32 with SiLU, writing out (fp32, the scan's u) and its quantization q (x_proj's input). */
  causalConv1dSiluQuantizeF32(B: number, L: number, E: number, K: number, x: Float32Array, ldx: number,
    weight: Float32Array, bias: Float32Array | null, reverse: boolean, out: Float32Array, ldo: number, period: number,
    invSmooth: Float32Array | null, invScale: Float32Array, zero: Int32Array, qmax: number, q: Uint8Array, ldq: number,
    siluMath: MathMode): void;
  /** Both scan directions, combined and gated once, to y and/or q. */
  selectiveScanBidirF32(args: ScanBidirF32Args): void;

  /** Scalar references of the same contracts (double accumulation), for tests. */
  gemmF32Ref: CpuKernels['gemmF32'];
  addRmsNormF32Ref: CpuKernels['addRmsNormF32'];
  causalConv1dF32Ref: CpuKernels['causalConv1dF32'];
  selectiveScanF32Ref: CpuKernels['selectiveScanF32'];
  patchEmbedF32Ref: CpuKernels['patchEmbedF32'];
  quantizeU8Ref: CpuKernels['quantizeU8'];
  quantizeParamsDynamicRef: CpuKernels['quantizeParamsDynamic'];
  /** Reference: out is required. */
  addRmsNormQuantizeF32Ref: CpuKernels['addRmsNormQuantizeF32'];
  causalConv1dSiluQuantizeF32Ref: CpuKernels['causalConv1dSiluQuantizeF32'];
  /** Reference: y is required when q is given. */
  selectiveScanBidirF32Ref: CpuKernels['selectiveScanBidirF32'];

  runtimeInfo(): CpuRuntimeInfo;
  /** Resizes the thread pool; returns the count now in effect. */
  setThreads(n: number): number;
  /** Lowers (or restores) the ISA kernels dispatch to; throws if the CPU lacks it. Returns it. */
  setIsa(name: CpuIsa): CpuIsa;
  /** The address of a typed array's first byte modulo 64 (see alignedFloat32Array). */
  addressMod64(view: ArrayBufferView): number;
}

const FUNCTIONS: readonly (keyof CpuKernels)[] = [
  'gemmF32', 'addRmsNormF32', 'causalConv1dF32', 'selectiveScanF32', 'patchEmbedF32',
  'quantizeU8', 'quantizeParamsDynamic',
  'packInt8Weights', 'packedInt8Shape', 'gemmU8S8F32', 'gemmU8S8S32', 'gemmU8S8F32Ref', 'gemmU8S8S32Ref',
  'addRmsNormQuantizeF32', 'causalConv1dSiluQuantizeF32', 'selectiveScanBidirF32',
  'addRmsNormQuantizeF32Ref', 'causalConv1dSiluQuantizeF32Ref', 'selectiveScanBidirF32Ref',
  'gemmF32Ref', 'addRmsNormF32Ref', 'causalConv1dF32Ref', 'selectiveScanF32Ref', 'patchEmbedF32Ref',
  'quantizeU8Ref', 'quantizeParamsDynamicRef',
  'runtimeInfo', 'setThreads', 'setIsa', 'addressMod64',
];

let cached: CpuKernels | undefined;

/** The addon narrowed to its CPU kernels; throws if the loaded addon lacks any of them (stale build). */
export function cpuKernels(): CpuKernels {
  if (cached) return cached;
  const a = addon();
  const missing = FUNCTIONS.filter((name) => typeof a[name] !== 'function');
  if (missing.length > 0) {
    throw new Error(`the native addon lacks ${missing.join(', ')}; rebuild it with "npm run build:addon"`);
  }
  cached = a as unknown as CpuKernels;
  return cached;
}

/**
 * A zeroed array of n elements whose first element starts a 64-byte cache line. Node places
 * large typed arrays 16 bytes past one (glibc's chunk header), so every 64-byte vector load and
 * store of the kernels on them straddled two lines: on the 2-core Zen 4, Vim-Ti batch 8, one
 * thread, the scan took 11 % longer per call, the conv 11 %, in_proj 7 % (INT8; FP32 alike).
 * Over-allocates by one line and returns the aligned view (its .buffer is the larger one).
 */
function alignedArray<T extends Float32Array | Uint8Array>(make: (n: number) => T, bytesPerElement: number, n: number): T {
  const raw = make(n + 64 / bytesPerElement);
  const offset = ((64 - cpuKernels().addressMod64(raw)) % 64) / bytesPerElement;
  // malloc's alignment is a multiple of 8 bytes, so offset is whole.
  return raw.subarray(offset, offset + n) as T;
}

export function alignedFloat32Array(n: number): Float32Array {
  return alignedArray((m) => new Float32Array(m), 4, n);
}

export function alignedUint8Array(n: number): Uint8Array {
  return alignedArray((m) => new Uint8Array(m), 1, n);
}
