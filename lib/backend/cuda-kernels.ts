import { addon } from './addon.js';

/**
 * The CUDA runtime and kernels of the native addon (native/binding/cuda_binding.cc), typed.
 * Device memory is held by opaque handles that JS owns: free them with `cudaDispose` (a
 * finalizer frees what is forgotten, whenever the GC runs). Every operand is a buffer plus an
 * element offset (and a row stride in elements for matrices); the binding checks each extent
 * against its buffer, the buffer's element type and context, and that outputs do not overlap
 * inputs. Kernels are queued on the context's stream; `cudaDownload`/`cudaSynchronize` wait.
 * Without a GPU, `cudaInfo` reports no devices and why; every other call throws
 * "<fn>: no CUDA device (<reason>)". Semantics of each op: native/include/ptq4vm/cuda/*.h.
 */

declare const handleKind: unique symbol;
/** An opaque native handle (a type-tagged external). */
export interface CudaHandle<K extends string> {
  readonly [handleKind]: K;
}
export type CudaContextHandle = CudaHandle<'context'>;
export type CudaBufferHandle = CudaHandle<'buffer'>;
export type CudaWeightsHandle = CudaHandle<'weights'>;
export type CudaQuantHandle = CudaHandle<'quant'>;
export type CudaGraphHandle = CudaHandle<'graph'>;
export type AnyCudaHandle = CudaContextHandle | CudaBufferHandle | CudaWeightsHandle | CudaQuantHandle | CudaGraphHandle;

/** Element types of device buffers. */
export type CudaDType = 'f32' | 'f16' | 'u8' | 'i32' | 'i8';
/** Tensor-core tile shape of a GEMM (null/'auto': chosen from M, N and the device). */
export type GemmTile = 'auto' | 'large' | 'medium' | 'small' | 'simple' | null;

export interface CudaDeviceInfo {
  index: number;
  name: string;
  /** "major.minor", e.g. "9.0". */
  computeCapability: string;
  memoryBytes: number;
  smCount: number;
}

export interface CudaInfo {
  devices: CudaDeviceInfo[];
  /** Why there are no devices (null when there are). */
  reason: string | null;
  /** 'fast' (tensor cores, optimised kernels) or 'simple' (reference kernels; PTQ4VM_CUDA_KERNELS=simple). */
  kernelMode: string;
}

export interface CudaAllocatorStats {
  deviceMallocs: number;
  deviceFrees: number;
  cacheHits: number;
  reservedBytes: number;
  inUseBytes: number;
  device: number;
  name: string;
}

type Buf = CudaBufferHandle;
type Ctx = CudaContextHandle;

/** One direction of `cudaBiConv`; each writes u8 (quantized for its x_proj), out (f32/f16), or both. */
export interface BiConvDirectionArgs {
  /** f32 [E, K] */
  weight: Buf;
  bias: Buf | null;
  u8?: Buf | null;
  u8Offset?: number;
  ldU8?: number;
  /** Required with u8: the consuming linear's activation quantization. */
  quant?: CudaQuantHandle | null;
  out?: Buf | null;
  outOffset?: number;
  ldOut?: number;
}

/** One direction of `cudaBiScan`, every operand in that direction's own token order. */
export interface BiScanDirectionArgs {
  u: Buf;
  uOffset: number;
  ldu: number;
  /** u8 u: the parameters it was quantized with (dequantized in registers). */
  uQuant?: CudaQuantHandle | null;
  delta: Buf;
  deltaOffset: number;
  ldDelta: number;
  deltaBias: Buf | null;
  /** f32 [E, N], −exp(A_log) */
  A: Buf;
  Bm: Buf;
  bOffset: number;
  ldB: number;
  Cm: Buf;
  cOffset: number;
  ldC: number;
  D: Buf | null;
}

export interface BiScanArgs {
  B: number;
  L: number;
  E: number;
  N: number;
  fwd: BiScanDirectionArgs;
  bwd: BiScanDirectionArgs;
  /** The gate, in token order (null: no gate). Same type as delta. */
  z: Buf | null;
  zOffset: number;
  ldz: number;
  deltaSoftplus: boolean;
  /** (y_fwd + y_bwd)/2 in token order: f32, f16, or u8 quantized with yQuant. */
  y: Buf;
  yOffset: number;
  ldy: number;
  yQuant: CudaQuantHandle | null;
}

export interface CudaKernels {
  cudaInfo(): CudaInfo;
  cudaSetKernelMode(mode: 'fast' | 'simple'): string;
  cudaCreateContext(device: number): Ctx;
  /** Frees what a handle owns now (idempotent); a context lives on until its last handle is gone. */
  cudaDispose(handle: AnyCudaHandle): void;
  cudaSynchronize(ctx: Ctx): void;
  cudaStats(ctx: Ctx): CudaAllocatorStats;
  /** persistent: its own cudaMalloc (weights); otherwise from the context's caching allocator. */
  cudaAlloc(ctx: Ctx, dtype: CudaDType, length: number, persistent: boolean): Buf;
  /** f32 ← Float32Array; f16 ← Float32Array (rounded) or Uint16Array (bits); u8 ← Uint8Array; i32 ← Int32Array; i8 ← Int8Array. */
  cudaUpload(ctx: Ctx, buf: Buf, offset: number, data: Float32Array | Uint16Array | Uint8Array | Int32Array | Int8Array): void;
  /** Dense [rows, cols] copy; f16 converted to Float32Array. Waits for the stream. */
  cudaDownload(ctx: Ctx, buf: Buf, offset: number, rows: number, cols: number, ld: number): Float32Array | Uint8Array | Int32Array | Int8Array;
  cudaUploadInt8Weights(ctx: Ctx, N: number, K: number, qweight: Int8Array): CudaWeightsHandle;
  cudaUploadF16Weights(ctx: Ctx, N: number, K: number, weight: Float32Array): CudaWeightsHandle;
  /** A linear's activation quantization (period, levels 0..qmax, step sizes, zero points, σ or null). */
  cudaQuantParams(ctx: Ctx, period: number, qmax: number, scale: Float32Array, zero: Int32Array, smooth: Float32Array | null): CudaQuantHandle;
  cudaBeginCapture(ctx: Ctx): void;
  cudaEndCapture(ctx: Ctx): CudaGraphHandle;
  cudaAbortCapture(ctx: Ctx): void;
  cudaLaunchGraph(ctx: Ctx, graph: CudaGraphHandle): void;
  cudaPatchEmbedF32(ctx: Ctx, B: number, C: number, H: number, W: number, P: number, S: number, img: Buf, weight: Buf, bias: Buf | null,
    D: number, out: Buf, outOffset: number): void;
  cudaPatchEmbedF16(ctx: Ctx, B: number, C: number, H: number, W: number, P: number, S: number, img: Buf, weights: CudaWeightsHandle,
    bias: Buf | null, out: Buf, outOffset: number): void;
  cudaAssembleTokens(ctx: Ctx, B: number, G: number, D: number, patches: Buf, patchesOffset: number, cls: Buf | null, clsPos: number,
    pos: Buf, out: Buf, outOffset: number): void;
  cudaGatherToken(ctx: Ctx, B: number, L: number, D: number, t: number, src: Buf, srcOffset: number, dst: Buf, dstOffset: number): void;
  cudaConvert(ctx: Ctx, rows: number, cols: number, x: Buf, xOffset: number, ldx: number, y: Buf, yOffset: number, ldy: number): void;
  cudaAddRmsNorm(ctx: Ctx, rows: number, D: number, x: Buf, xOffset: number, residualIn: Buf | null, residualOut: Buf | null, weight: Buf,
    eps: number, out: Buf, outOffset: number, quant: CudaQuantHandle | null): void;
  cudaQuantize(ctx: Ctx, rows: number, cols: number, x: Buf, xOffset: number, ldx: number, quant: CudaQuantHandle, q: Buf, qOffset: number, ldq: number): void;
  cudaDequantize(ctx: Ctx, rows: number, cols: number, q: Buf, qOffset: number, ldq: number, quant: CudaQuantHandle, y: Buf, yOffset: number, ldy: number): void;
  cudaGemmF32(ctx: Ctx, M: number, N: number, K: number, A: Buf, aOffset: number, lda: number, W: Buf, wOffset: number, ldw: number,
    bias: Buf | null, accumulate: boolean, C: Buf, cOffset: number, ldc: number): void;
  cudaGemmF16(ctx: Ctx, M: number, A: Buf, aOffset: number, lda: number, weights: CudaWeightsHandle, bias: Buf | null,
    out: Buf, outOffset: number, ldo: number, accumulate: boolean, tile: GemmTile): void;
  cudaGemmU8S8(ctx: Ctx, M: number, A: Buf, aOffset: number, lda: number, weights: CudaWeightsHandle, aQuant: CudaQuantHandle, wScale: Buf,
    bias: Buf | null, out: Buf | null, outOffset: number, ldo: number, accumulate: boolean,
    q: Buf | null, qOffset: number, ldq: number, qCols: number, qQuant: CudaQuantHandle | null, tile: GemmTile): void;
  cudaBiConv(ctx: Ctx, B: number, L: number, E: number, K: number, x: Buf, xOffset: number, ldx: number,
    fwd: BiConvDirectionArgs | null, bwd: BiConvDirectionArgs | null): void;
  cudaBiScan(ctx: Ctx, args: BiScanArgs): void;
}

/** The addon's CUDA part, or null when the addon was built without CUDA (nvcc absent). */
export function cudaKernelsOrNull(): CudaKernels | null {
  const a = addon();
  return typeof a.cudaInfo === 'function' ? (a as unknown as CudaKernels) : null;
}

/** The addon's CUDA part; throws when the addon was built without CUDA. */
export function cudaKernels(): CudaKernels {
  const k = cudaKernelsOrNull();
  if (!k) throw new Error('the native addon was built without CUDA (nvcc was not found at build time)');
  return k;
}

/**
 * Whether CUDA can run here: the first device, or the reason it cannot (addon without CUDA,
 * no GPU/driver). Never throws (a missing addon is a reason too).
 */
export function cudaAvailability(): { device: CudaDeviceInfo | null; reason: string | null } {
  try {
    const k = cudaKernelsOrNull();
    if (!k) return { device: null, reason: 'the addon was built without CUDA (nvcc was not found at build time)' };
    const info = k.cudaInfo();
    return info.devices.length ? { device: info.devices[0]!, reason: null } : { device: null, reason: info.reason ?? 'no CUDA device' };
  } catch (e) {
    return { device: null, reason: (e as Error).message };
  }
}
