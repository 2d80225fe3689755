/**
 * A CPU emulation of the CUDA binding (lib/backend/cuda-kernels.ts), so the CUDA executor's
 * orchestration — buffer views, strides, the backward branch's token order, which parameters
 * quantize what, recording and graph replay — is tested on machines without a GPU. It follows
 * the kernels' contracts (native/include/ptq4vm/cuda/*.h): fp16 storage rounds to nearest even,
 * u8 quantization uses the exact formula, INT8 GEMMs accumulate exactly, fp32 state elsewhere.
 * It checks every operand like the binding does (type, context, extent, overlap) and fills new
 * float buffers with NaN, so a read of something never written poisons the result.
 * Graph capture records calls instead of running them, as CUDA does.
 */
import { cpuKernels } from '../../lib/backend/cpu-kernels.js';
import type {
  AnyCudaHandle, BiConvDirectionArgs, BiScanArgs, BiScanDirectionArgs, CudaAllocatorStats, CudaBufferHandle, CudaContextHandle, CudaDType,
  CudaGraphHandle, CudaInfo, CudaKernels, CudaQuantHandle, CudaWeightsHandle, GemmTile,
} from '../../lib/backend/cuda-kernels.js';
import { f16ToF32, f32ToF16 } from '../../lib/tensor/dtype.js';

type Data = Float32Array | Uint8Array | Int32Array | Int8Array;

class ECtx {
  capturing: (() => void)[] | null = null;
  disposed = false;
  allocs = 0;
  launches = 0;
}
class EBuf {
  disposed = false;
  constructor(readonly ctx: ECtx, readonly dtype: CudaDType, readonly length: number, public data: Data) {}
}
class EWeights {
  disposed = false;
  constructor(readonly ctx: ECtx, readonly int8: boolean, readonly N: number, readonly K: number,
    readonly qw: Int8Array | null, readonly wsum: Int32Array | null, readonly w16: Float32Array | null) {}
}
class EQuant {
  disposed = false;
  constructor(readonly ctx: ECtx, readonly period: number, readonly qmax: number, readonly scale: Float32Array, readonly invScale: Float32Array,
    readonly zero: Int32Array, readonly smooth: Float32Array | null, readonly invSmooth: Float32Array | null) {}
}
class EGraph {
  disposed = false;
  constructor(readonly ctx: ECtx, readonly ops: (() => void)[]) {}
}

const f32 = Math.fround;
/** fp32 → fp16 → fp32, nearest even. */
export function roundF16(x: number): number {
  return f16ToF32(f32ToF16(x));
}
function roundHalfEven(v: number): number {
  const f = Math.floor(v);
  const d = v - f;
  return d > 0.5 ? f + 1 : d < 0.5 ? f : f % 2 === 0 ? f : f + 1;
}
function quantizeValue(x: number, invSmooth: number, invScale: number, zero: number, qmax: number): number {
  let v = f32(f32(x * invSmooth) * invScale);
  v = Math.min(Math.max(v, -1073741824), 1073741824);
  const q = roundHalfEven(v) + zero;
  return q < 0 ? 0 : q > qmax ? qmax : q;
}
function dequantizeValue(q: number, zero: number, scale: number, smooth: number): number {
  return f32(f32((q - zero) * scale) * smooth);
}
const silu = (x: number): number => f32(x / (1 + Math.exp(-x)));

interface Region {
  buf: EBuf;
  begin: number;
  end: number;
  name: string;
}

/** Argument checks of one call, mirroring native/binding/cuda_binding.cc. */
class Call {
  private readonly ins: Region[] = [];
  private readonly outs: Region[] = [];
  readonly ctx: ECtx;
  constructor(readonly fn: string, ctx: unknown) {
    if (!(ctx instanceof ECtx)) throw new TypeError(`${fn}: 'ctx' must be a CUDA context`);
    if (ctx.disposed) throw new RangeError(`${fn}: the CUDA context was disposed`);
    this.ctx = ctx;
  }
  fail(m: string): never {
    throw new RangeError(`${this.fn}: ${m}`);
  }
  buf(b: unknown, name: string, types: readonly CudaDType[]): EBuf {
    if (!(b instanceof EBuf)) throw new TypeError(`${this.fn}: '${name}' must be a CUDA buffer`);
    if (b.disposed) this.fail(`'${name}' was disposed`);
    if (b.ctx !== this.ctx) this.fail(`'${name}' belongs to another CUDA context`);
    if (!types.includes(b.dtype)) this.fail(`'${name}' is a ${b.dtype} buffer, expected ${types.join(' or ')}`);
    return b;
  }
  /** A matrix operand; returns the buffer (data indexed from offset). */
  mat(b: unknown, off: number, name: string, rows: number, cols: number, ld: number, types: readonly CudaDType[], output: boolean): EBuf {
    const buf = this.buf(b, name, types);
    if (!Number.isInteger(off) || off < 0) this.fail(`'${name} offset' must be a non-negative integer`);
    for (const [v, n] of [[rows, 'rows'], [cols, 'cols'], [ld, 'ld']] as const) if (!Number.isInteger(v) || v < 0) this.fail(`${name} ${n} = ${v}`);
    if (ld < cols) this.fail(`row stride of '${name}' (${ld}) is smaller than its row length (${cols})`);
    const extent = rows > 0 && cols > 0 ? (rows - 1) * ld + cols : 0;
    if (off + extent > buf.length) this.fail(`'${name}' needs ${extent} elements from offset ${off}, the buffer has ${buf.length}`);
    if (extent > 0) (output ? this.outs : this.ins).push({ buf, begin: off, end: off + extent, name });
    return buf;
  }
  vec(b: unknown, name: string, n: number, types: readonly CudaDType[]): EBuf {
    return this.mat(b, 0, name, n > 0 ? 1 : 0, n, n, types, false);
  }
  vecOrNull(b: unknown, name: string, n: number, types: readonly CudaDType[]): EBuf | null {
    return b === null || b === undefined ? null : this.vec(b, name, n, types);
  }
  quant(q: unknown, name: string): EQuant {
    if (!(q instanceof EQuant)) throw new TypeError(`${this.fn}: '${name}' must be CUDA quantization parameters`);
    if (q.disposed) this.fail(`'${name}' was disposed`);
    if (q.ctx !== this.ctx) this.fail(`'${name}' belongs to another CUDA context`);
    return q;
  }
  weights(w: unknown, name: string, int8: boolean): EWeights {
    if (!(w instanceof EWeights)) throw new TypeError(`${this.fn}: '${name}' must be CUDA weights`);
    if (w.disposed) this.fail(`'${name}' was disposed`);
    if (w.ctx !== this.ctx) this.fail(`'${name}' belongs to another CUDA context`);
    if (w.int8 !== int8) this.fail(`'${name}' must be ${int8 ? 'INT8' : 'FP16'} weights`);
    return w;
  }
  checkOverlaps(allowExact: [string, string][] = []): void {
    const ov = (a: Region, b: Region) => a.buf === b.buf && a.begin < b.end && b.begin < a.end;
    const ok = (a: Region, b: Region) => allowExact.some(([x, y]) => ((a.name === x && b.name === y) || (a.name === y && b.name === x)) && a.begin === b.begin && a.end === b.end);
    for (let i = 0; i < this.outs.length; i++) {
      for (const r of this.ins) if (ov(this.outs[i]!, r) && !ok(this.outs[i]!, r)) this.fail(`'${this.outs[i]!.name}' must not overlap '${r.name}'`);
      for (let j = i + 1; j < this.outs.length; j++) if (ov(this.outs[i]!, this.outs[j]!)) this.fail(`'${this.outs[i]!.name}' must not overlap '${this.outs[j]!.name}'`);
    }
  }
  /** Runs the computation now, or records it while the context captures. */
  run(f: () => void): void {
    this.ctx.launches++;
    if (this.ctx.capturing) this.ctx.capturing.push(f);
    else f();
  }
}

/** Stores v at data[i] as the buffer's type (fp16 rounded). */
function store(b: EBuf, i: number, v: number): void {
  (b.data as Float32Array)[i] = b.dtype === 'f16' ? roundF16(v) : f32(v);
}

export interface EmulatedKernels extends CudaKernels {
  /** Kernel launches so far (recorded ones included) and buffers allocated, per context. */
  counters(ctx: CudaContextHandle): { launches: number; allocs: number };
}

/** A CudaKernels implementation on the CPU (one emulated device). */
export function emulatedCudaKernels(): EmulatedKernels {
  const cpu = cpuKernels();
  const asCtx = (c: unknown) => c as ECtx;

  const k: EmulatedKernels = {
    counters(ctx) {
      return { launches: asCtx(ctx).launches, allocs: asCtx(ctx).allocs };
    },
    cudaInfo(): CudaInfo {
      return { devices: [{ index: 0, name: 'emulated CUDA device (CPU)', computeCapability: '0.0', memoryBytes: 0, smCount: 0 }], reason: null, kernelMode: 'emulated' };
    },
    cudaSetKernelMode(mode) {
      return mode;
    },
    cudaCreateContext(device) {
      if (device !== 0) throw new RangeError(`cudaCreateContext: 'device' = ${device} is outside [0, 0]`);
      return new ECtx() as unknown as CudaContextHandle;
    },
    cudaDispose(h: AnyCudaHandle) {
      const o = h as unknown as { disposed: boolean };
      if (!(o instanceof ECtx || o instanceof EBuf || o instanceof EWeights || o instanceof EQuant || o instanceof EGraph)) {
        throw new TypeError("cudaDispose: 'handle' must be a CUDA handle");
      }
      o.disposed = true;
    },
    cudaSynchronize(ctx) {
      const c = new Call('cudaSynchronize', ctx);
      if (c.ctx.capturing) c.fail('Context::synchronize: not allowed while a graph capture is running');
    },
    cudaStats(ctx): CudaAllocatorStats {
      const c = new Call('cudaStats', ctx);
      return { deviceMallocs: c.ctx.allocs, deviceFrees: 0, cacheHits: 0, reservedBytes: 0, inUseBytes: 0, device: 0, name: 'emulated' };
    },
    cudaAlloc(ctx, dtype, length, persistent) {
      const c = new Call('cudaAlloc', ctx);
      if (!Number.isInteger(length) || length < 0) c.fail(`'length' = ${length}`);
      void persistent;
      c.ctx.allocs++;
      const data: Data = dtype === 'f32' || dtype === 'f16' ? new Float32Array(length).fill(NaN)
        : dtype === 'u8' ? new Uint8Array(length).fill(0xcd) : dtype === 'i32' ? new Int32Array(length) : new Int8Array(length);
      return new EBuf(c.ctx, dtype, length, data) as unknown as CudaBufferHandle;
    },
    cudaUpload(ctx, buf, offset, data) {
      const c = new Call('cudaUpload', ctx);
      if (c.ctx.capturing) c.fail('Context::upload: not allowed while a graph capture is running');
      const b = c.mat(buf, offset, 'buffer', data.length > 0 ? 1 : 0, data.length, data.length, ['f32', 'f16', 'u8', 'i32', 'i8'], true);
      const ok = (b.dtype === 'f32' && data instanceof Float32Array) || (b.dtype === 'f16' && (data instanceof Float32Array || data instanceof Uint16Array))
        || (b.dtype === 'u8' && data instanceof Uint8Array) || (b.dtype === 'i32' && data instanceof Int32Array) || (b.dtype === 'i8' && data instanceof Int8Array);
      if (!ok) c.fail(`cannot upload this typed array into a ${b.dtype} buffer`);
      if (b.dtype === 'f16') for (let i = 0; i < data.length; i++) (b.data as Float32Array)[offset + i] = data instanceof Uint16Array ? f16ToF32(data[i]!) : roundF16(data[i]!);
      else (b.data as Float32Array).set(data as Float32Array, offset);
    },
    cudaDownload(ctx, buf, offset, rows, cols, ld) {
      const c = new Call('cudaDownload', ctx);
      if (c.ctx.capturing) c.fail('Context::download: not allowed while a graph capture is running');
      const b = c.mat(buf, offset, 'buffer', rows, cols, ld, ['f32', 'f16', 'u8', 'i32', 'i8'], false);
      const Ctor = b.dtype === 'f32' || b.dtype === 'f16' ? Float32Array : b.dtype === 'u8' ? Uint8Array : b.dtype === 'i32' ? Int32Array : Int8Array;
      const out = new Ctor(rows * cols);
      for (let r = 0; r < rows; r++) out.set((b.data as Float32Array).subarray(offset + r * ld, offset + r * ld + cols), r * cols);
      return out;
    },
    cudaUploadInt8Weights(ctx, N, K, qweight) {
      const c = new Call('cudaUploadInt8Weights', ctx);
      if (qweight.length < N * K) c.fail(`'qweight' has ${qweight.length} elements, needs ${N * K}`);
      const wsum = new Int32Array(N);
      for (let n = 0; n < N; n++) {
        let s = 0;
        for (let j = 0; j < K; j++) s += qweight[n * K + j]!;
        wsum[n] = s;
      }
      return new EWeights(c.ctx, true, N, K, qweight.slice(0, N * K), wsum, null) as unknown as CudaWeightsHandle;
    },
    cudaUploadF16Weights(ctx, N, K, weight) {
      const c = new Call('cudaUploadF16Weights', ctx);
      if (weight.length < N * K) c.fail(`'weight' has ${weight.length} elements, needs ${N * K}`);
      const w = new Float32Array(N * K);
      for (let i = 0; i < w.length; i++) w[i] = roundF16(weight[i]!);
      return new EWeights(c.ctx, false, N, K, null, null, w) as unknown as CudaWeightsHandle;
    },
    cudaQuantParams(ctx, period, qmax, scale, zero, smooth) {
      const c = new Call('cudaQuantParams', ctx);
      if (scale.length < period || zero.length < period) c.fail('scale/zero shorter than period');
      const inv = (a: Float32Array) => Float32Array.from(a, (v) => 1 / v);
      for (let p = 0; p < period; p++) {
        if (!(scale[p]! > 0) || !Number.isFinite(scale[p]!)) c.fail(`scale[${p}] must be positive and finite`);
        if (zero[p]! < 0 || zero[p]! > qmax) c.fail(`zero[${p}] is outside [0, qmax]`);
      }
      return new EQuant(c.ctx, period, qmax, scale.slice(0, period), inv(scale.slice(0, period)), zero.slice(0, period),
        smooth ? smooth.slice() : null, smooth ? inv(smooth) : null) as unknown as CudaQuantHandle;
    },
    cudaBeginCapture(ctx) {
      const c = new Call('cudaBeginCapture', ctx);
      if (c.ctx.capturing) c.fail('Context::begin_capture: a capture is already running');
      c.ctx.capturing = [];
    },
    cudaEndCapture(ctx) {
      const c = new Call('cudaEndCapture', ctx);
      if (!c.ctx.capturing) c.fail('Context::end_capture: no capture is running');
      const g = new EGraph(c.ctx, c.ctx.capturing!);
      c.ctx.capturing = null;
      return g as unknown as CudaGraphHandle;
    },
    cudaAbortCapture(ctx) {
      new Call('cudaAbortCapture', ctx).ctx.capturing = null;
    },
    cudaLaunchGraph(ctx, graph) {
      const c = new Call('cudaLaunchGraph', ctx);
      const g = graph as unknown as EGraph;
      if (!(g instanceof EGraph) || g.disposed) c.fail("'graph' was disposed");
      c.run(() => {
        for (const f of g.ops) f();
      });
    },
    cudaPatchEmbedF32(ctx, B, C, H, W, P, S, img, weight, bias, D, out, outOffset) {
      const c = new Call('cudaPatchEmbedF32', ctx);
      const G = (Math.floor((H - P) / S) + 1) * (Math.floor((W - P) / S) + 1);
      const ib = c.vec(img, 'img', B * C * H * W, ['f32']);
      const wb = c.vec(weight, 'weight', D * C * P * P, ['f32']);
      const bb = c.vecOrNull(bias, 'bias', D, ['f32']);
      const ob = c.mat(out, outOffset, 'out', B * G, D, D, ['f32'], true);
      c.checkOverlaps();
      c.run(() => {
        const tmp = new Float32Array(B * G * D);
        cpu.patchEmbedF32(B, C, H, W, P, S, ib.data as Float32Array, wb.data as Float32Array, bb ? (bb.data as Float32Array) : null, D, tmp);
        (ob.data as Float32Array).set(tmp, outOffset);
      });
    },
    cudaPatchEmbedF16(ctx, B, C, H, W, P, S, img, weights, bias, out, outOffset) {
      const c = new Call('cudaPatchEmbedF16', ctx);
      const w = c.weights(weights, 'weights', false);
      const gh = Math.floor((H - P) / S) + 1;
      const gw = Math.floor((W - P) / S) + 1;
      const G = gh * gw;
      const K = C * P * P;
      if (w.K !== K) c.fail(`'weights' has K = ${w.K}, the patches have C·P·P = ${K}`);
      const D = w.N;
      const ib = c.vec(img, 'img', B * C * H * W, ['f32']);
      const bb = c.vecOrNull(bias, 'bias', D, ['f32']);
      const ob = c.mat(out, outOffset, 'out', B * G, D, D, ['f32', 'f16'], true);
      c.checkOverlaps();
      c.run(() => {
        const x = ib.data as Float32Array;
        const cols = new Float32Array(B * G * K);
        for (let b = 0; b < B; b++) {
          for (let gy = 0; gy < gh; gy++) {
            for (let gx = 0; gx < gw; gx++) {
              const row = (b * G + gy * gw + gx) * K;
              for (let ch = 0; ch < C; ch++) {
                for (let i = 0; i < P; i++) {
                  for (let j = 0; j < P; j++) cols[row + (ch * P + i) * P + j] = roundF16(x[((b * C + ch) * H + gy * S + i) * W + gx * S + j]!);
                }
              }
            }
          }
        }
        const tmp = new Float32Array(B * G * D);
        cpu.gemmF32(false, true, B * G, D, K, cols, K, w.w16!, K, bb ? (bb.data as Float32Array) : null, false, tmp, D);
        for (let i = 0; i < tmp.length; i++) store(ob, outOffset + i, tmp[i]!);
      });
    },
    cudaAssembleTokens(ctx, B, G, D, patches, patchesOffset, cls, clsPos, pos, out, outOffset) {
      const c = new Call('cudaAssembleTokens', ctx);
      const pb = c.mat(patches, patchesOffset, 'patches', B * G, D, D, ['f32', 'f16'], false);
      const cb = c.vecOrNull(cls, 'cls', D, ['f32']);
      const L = G + (cb ? 1 : 0);
      if (!(clsPos >= 0 && clsPos <= G)) c.fail(`'clsPos' = ${clsPos} is outside [0, ${G}]`);
      const posb = c.vec(pos, 'pos', L * D, ['f32']);
      const ob = c.mat(out, outOffset, 'out', B * L, D, D, ['f32', 'f16'], true);
      c.checkOverlaps();
      c.run(() => {
        const p = pb.data as Float32Array;
        for (let b = 0; b < B; b++) {
          for (let t = 0; t < L; t++) {
            for (let j = 0; j < D; j++) {
              const v = cb && t === clsPos ? (cb.data as Float32Array)[j]! : p[patchesOffset + (b * G + (cb && t > clsPos ? t - 1 : t)) * D + j]!;
              store(ob, outOffset + (b * L + t) * D + j, f32(v + (posb.data as Float32Array)[t * D + j]!));
            }
          }
        }
      });
    },
    cudaGatherToken(ctx, B, L, D, t, src, srcOffset, dst, dstOffset) {
      const c = new Call('cudaGatherToken', ctx);
      if (!(t >= 0 && t < L)) c.fail(`'t' = ${t} is outside [0, ${L - 1}]`);
      const sb = c.mat(src, srcOffset, 'src', B * L, D, D, ['f32', 'f16'], false);
      const db = c.mat(dst, dstOffset, 'dst', B, D, D, ['f32', 'f16'], true);
      if (sb.dtype !== db.dtype) c.fail("'src' and 'dst' must have the same type");
      c.checkOverlaps();
      c.run(() => {
        for (let b = 0; b < B; b++) {
          (db.data as Float32Array).set((sb.data as Float32Array).subarray(srcOffset + (b * L + t) * D, srcOffset + (b * L + t + 1) * D), dstOffset + b * D);
        }
      });
    },
    cudaConvert(ctx, rows, cols, x, xOffset, ldx, y, yOffset, ldy) {
      const c = new Call('cudaConvert', ctx);
      const xb = c.mat(x, xOffset, 'x', rows, cols, ldx, ['f32', 'f16'], false);
      const yb = c.mat(y, yOffset, 'y', rows, cols, ldy, ['f32', 'f16'], true);
      c.checkOverlaps();
      c.run(() => {
        for (let r = 0; r < rows; r++) for (let j = 0; j < cols; j++) store(yb, yOffset + r * ldy + j, (xb.data as Float32Array)[xOffset + r * ldx + j]!);
      });
    },
    cudaAddRmsNorm(ctx, rows, D, x, xOffset, residualIn, residualOut, weight, eps, out, outOffset, quant) {
      const c = new Call('cudaAddRmsNorm', ctx);
      const xb = c.mat(x, xOffset, 'x', rows, D, D, ['f32', 'f16'], false);
      const ri = residualIn ? c.mat(residualIn, 0, 'residualIn', rows, D, D, ['f32'], false) : null;
      const ro = residualOut ? c.mat(residualOut, 0, 'residualOut', rows, D, D, ['f32'], true) : null;
      const wb = c.vec(weight, 'weight', D, ['f32']);
      if (!(eps > 0)) c.fail("'eps' must be positive");
      const ob = c.mat(out, outOffset, 'out', rows, D, D, ['f32', 'f16', 'u8'], true);
      const q = quant ? c.quant(quant, 'quant') : null;
      if (ob.dtype === 'u8') {
        if (!q) return c.fail('a u8 output needs \'quant\'');
        if (q.smooth && q.smooth.length !== D) c.fail(`'quant' has ${q.smooth.length} smoothing factors, the rows have ${D}`);
      }
      c.checkOverlaps([['residualOut', 'residualIn']]);
      c.run(() => {
        const row = new Float32Array(D);
        const w = wb.data as Float32Array;
        for (let r = 0; r < rows; r++) {
          let ss = 0;
          for (let j = 0; j < D; j++) {
            const v = f32((xb.data as Float32Array)[xOffset + r * D + j]! + (ri ? (ri.data as Float32Array)[r * D + j]! : 0));
            row[j] = v;
            ss += v * v;
          }
          if (ro) (ro.data as Float32Array).set(row, r * D);
          const inv = 1 / Math.sqrt(ss / D + eps);
          for (let j = 0; j < D; j++) {
            const y = f32(f32(row[j]! * inv) * w[j]!);
            const i = outOffset + r * D + j;
            if (ob.dtype === 'u8') {
              const p = r % q!.period;
              (ob.data as Uint8Array)[i] = quantizeValue(y, q!.invSmooth ? q!.invSmooth[j]! : 1, q!.invScale[p]!, q!.zero[p]!, q!.qmax);
            } else store(ob, i, y);
          }
        }
      });
    },
    cudaQuantize(ctx, rows, cols, x, xOffset, ldx, quant, q, qOffset, ldq) {
      const c = new Call('cudaQuantize', ctx);
      const xb = c.mat(x, xOffset, 'x', rows, cols, ldx, ['f32', 'f16'], false);
      const qp = c.quant(quant, 'quant');
      if (qp.smooth && qp.smooth.length !== cols) c.fail(`'quant' has ${qp.smooth.length} smoothing factors, x has ${cols} columns`);
      const qb = c.mat(q, qOffset, 'q', rows, cols, ldq, ['u8'], true);
      c.checkOverlaps();
      c.run(() => {
        for (let r = 0; r < rows; r++) {
          const p = r % qp.period;
          for (let j = 0; j < cols; j++) {
            (qb.data as Uint8Array)[qOffset + r * ldq + j] = quantizeValue((xb.data as Float32Array)[xOffset + r * ldx + j]!,
              qp.invSmooth ? qp.invSmooth[j]! : 1, qp.invScale[p]!, qp.zero[p]!, qp.qmax);
          }
        }
      });
    },
    cudaDequantize(ctx, rows, cols, q, qOffset, ldq, quant, y, yOffset, ldy) {
      const c = new Call('cudaDequantize', ctx);
      const qb = c.mat(q, qOffset, 'q', rows, cols, ldq, ['u8'], false);
      const qp = c.quant(quant, 'quant');
      if (qp.smooth && qp.smooth.length !== cols) c.fail(`'quant' has ${qp.smooth.length} smoothing factors, q has ${cols} columns`);
      const yb = c.mat(y, yOffset, 'y', rows, cols, ldy, ['f32', 'f16'], true);
      c.checkOverlaps();
      c.run(() => {
        for (let r = 0; r < rows; r++) {
          const p = r % qp.period;
          for (let j = 0; j < cols; j++) {
            store(yb, yOffset + r * ldy + j, dequantizeValue((qb.data as Uint8Array)[qOffset + r * ldq + j]!, qp.zero[p]!, qp.scale[p]!, qp.smooth ? qp.smooth[j]! : 1));
          }
        }
      });
    },
    cudaGemmF32(ctx, M, N, K, A, aOffset, lda, W, wOffset, ldw, bias, accumulate, C, cOffset, ldc) {
      const c = new Call('cudaGemmF32', ctx);
      const ab = c.mat(A, aOffset, 'A', M, K, lda, ['f32'], false);
      const wb = c.mat(W, wOffset, 'W', N, K, ldw, ['f32'], false);
      const bb = c.vecOrNull(bias, 'bias', N, ['f32']);
      const cb = c.mat(C, cOffset, 'C', M, N, ldc, ['f32'], true);
      c.checkOverlaps();
      c.run(() => {
        cpu.gemmF32(false, true, M, N, K, (ab.data as Float32Array).subarray(aOffset), lda, (wb.data as Float32Array).subarray(wOffset), ldw,
          bb ? (bb.data as Float32Array) : null, accumulate, (cb.data as Float32Array).subarray(cOffset), ldc);
      });
    },
    cudaGemmF16(ctx, M, A, aOffset, lda, weights, bias, out, outOffset, ldo, accumulate, tile: GemmTile) {
      const c = new Call('cudaGemmF16', ctx);
      void tile;
      const w = c.weights(weights, 'weights', false);
      const ab = c.mat(A, aOffset, 'A', M, w.K, lda, ['f16'], false);
      const bb = c.vecOrNull(bias, 'bias', w.N, ['f32']);
      const ob = c.mat(out, outOffset, 'out', M, w.N, ldo, ['f16', 'f32'], true);
      if (accumulate && ob.dtype !== 'f32') c.fail("'accumulate' needs an f32 output");
      c.checkOverlaps();
      c.run(() => {
        const tmp = new Float32Array(M * w.N);
        cpu.gemmF32(false, true, M, w.N, w.K, (ab.data as Float32Array).subarray(aOffset), lda, w.w16!, w.K, bb ? (bb.data as Float32Array) : null, false, tmp, w.N);
        for (let m = 0; m < M; m++) {
          for (let n = 0; n < w.N; n++) {
            const i = outOffset + m * ldo + n;
            store(ob, i, accumulate ? (ob.data as Float32Array)[i]! + tmp[m * w.N + n]! : tmp[m * w.N + n]!);
          }
        }
      });
    },
    cudaGemmU8S8(ctx, M, A, aOffset, lda, weights, aQuant, wScale, bias, out, outOffset, ldo, accumulate, q, qOffset, ldq, qCols, qQuant, tile) {
      const c = new Call('cudaGemmU8S8', ctx);
      void tile;
      const w = c.weights(weights, 'weights', true);
      const ab = c.mat(A, aOffset, 'A', M, w.K, lda, ['u8'], false);
      const aq = c.quant(aQuant, 'aQuant');
      const ws = c.vec(wScale, 'wScale', w.N, ['f32']);
      const bb = c.vecOrNull(bias, 'bias', w.N, ['f32']);
      const ob = out ? c.mat(out, outOffset, 'out', M, w.N, ldo, ['f32', 'f16'], true) : null;
      if (accumulate && (!ob || ob.dtype !== 'f32')) c.fail("'accumulate' needs an f32 output");
      let qb: EBuf | null = null;
      let qq: EQuant | null = null;
      if (q) {
        if (!(qCols >= 1 && qCols <= w.N)) c.fail(`'qCols' = ${qCols} is outside [1, ${w.N}]`);
        qb = c.mat(q, qOffset, 'q', M, qCols, ldq, ['u8'], true);
        qq = c.quant(qQuant, 'qQuant');
        if (qq.smooth && qq.smooth.length !== qCols) c.fail(`'qQuant' has ${qq.smooth.length} smoothing factors, qCols is ${qCols}`);
      }
      if (!ob && !qb) c.fail('no output given (out and q are null)');
      c.checkOverlaps();
      c.run(() => {
        const a = ab.data as Uint8Array;
        const qw = w.qw!;
        const K = w.K;
        const sc = ws.data as Float32Array;
        for (let m = 0; m < M; m++) {
          const p = m % aq.period;
          const z = aq.zero[p]!;
          const as = aq.scale[p]!;
          const arow = aOffset + m * lda;
          for (let n = 0; n < w.N; n++) {
            let acc = 0;
            const wrow = n * K;
            for (let j = 0; j < K; j++) acc += a[arow + j]! * qw[wrow + j]!;
            const v = f32(f32(acc - z * w.wsum![n]!) * as);
            const y = f32(v * sc[n]! + (bb ? (bb.data as Float32Array)[n]! : 0)); // one fused multiply-add
            if (ob) {
              const i = outOffset + m * ldo + n;
              store(ob, i, accumulate ? (ob.data as Float32Array)[i]! + y : y);
            }
            if (qb && n < qCols) {
              const pq = m % qq!.period;
              (qb.data as Uint8Array)[qOffset + m * ldq + n] = quantizeValue(y, qq!.invSmooth ? qq!.invSmooth[n]! : 1, qq!.invScale[pq]!, qq!.zero[pq]!, qq!.qmax);
            }
          }
        }
      });
    },
    cudaBiConv(ctx, B, L, E, K, x, xOffset, ldx, fwd, bwd) {
      const c = new Call('cudaBiConv', ctx);
      if (!(K >= 1 && K <= 8)) c.fail(`'K' = ${K} is outside [1, 8]`);
      const rows = B * L;
      const xb = c.mat(x, xOffset, 'x', rows, E, ldx, ['f32', 'f16'], false);
      const dir = (d: BiConvDirectionArgs | null, name: string) => {
        if (!d) return null;
        const wb = c.vec(d.weight, `${name}.weight`, E * K, ['f32']);
        const bb = c.vecOrNull(d.bias, `${name}.bias`, E, ['f32']);
        const u8 = d.u8 ? c.mat(d.u8, d.u8Offset ?? 0, `${name}.u8`, rows, E, d.ldU8!, ['u8'], true) : null;
        const q = u8 ? c.quant(d.quant, `${name}.quant`) : null;
        if (q?.smooth && q.smooth.length !== E) c.fail(`'${name}.quant' has ${q.smooth.length} smoothing factors, E is ${E}`);
        const out = d.out ? c.mat(d.out, d.outOffset ?? 0, `${name}.out`, rows, E, d.ldOut!, ['f32', 'f16'], true) : null;
        if (!u8 && !out) c.fail(`'${name}' writes nothing (u8 and out are null)`);
        return { wb, bb, u8, q, out, u8Offset: d.u8Offset ?? 0, ldU8: d.ldU8!, outOffset: d.outOffset ?? 0, ldOut: d.ldOut! };
      };
      const dirs = [dir(fwd, 'fwd'), dir(bwd, 'bwd')] as const;
      if (!dirs[0] && !dirs[1]) c.fail('both directions are null');
      c.checkOverlaps();
      c.run(() => {
        const xv = xb.data as Float32Array;
        dirs.forEach((d, di) => {
          if (!d) return;
          const reverse = di === 1;
          const w = d.wb.data as Float32Array;
          for (let b = 0; b < B; b++) {
            for (let t = 0; t < L; t++) {
              const row = b * L + (reverse ? L - 1 - t : t);
              for (let e = 0; e < E; e++) {
                let acc = d.bb ? (d.bb.data as Float32Array)[e]! : 0;
                for (let j = 0; j < K; j++) {
                  const s = reverse ? t + j : t - j;
                  if (s >= 0 && s < L) acc += w[e * K + (K - 1 - j)]! * xv[xOffset + (b * L + s) * ldx + e]!;
                }
                const v = silu(f32(acc));
                if (d.u8) {
                  const p = row % d.q!.period;
                  (d.u8.data as Uint8Array)[d.u8Offset + row * d.ldU8 + e] = quantizeValue(v, d.q!.invSmooth ? d.q!.invSmooth[e]! : 1, d.q!.invScale[p]!, d.q!.zero[p]!, d.q!.qmax);
                }
                if (d.out) store(d.out, d.outOffset + row * d.ldOut + e, v);
              }
            }
          }
        });
      });
    },
    cudaBiScan(ctx, a: BiScanArgs) {
      const c = new Call('cudaBiScan', ctx);
      const { B, L, E, N } = a;
      if (!(N >= 1 && N <= 64)) c.fail(`'N' = ${N} is outside [1, 64]`);
      const rows = B * L;
      const dir = (d: BiScanDirectionArgs, name: string) => {
        const u = c.mat(d.u, d.uOffset, `${name}.u`, rows, E, d.ldu, ['f32', 'f16', 'u8'], false);
        const uq = u.dtype === 'u8' ? c.quant(d.uQuant, `${name}.uQuant`) : null;
        if (uq?.smooth && uq.smooth.length !== E) c.fail(`'${name}.uQuant' has ${uq.smooth.length} smoothing factors, E is ${E}`);
        const delta = c.mat(d.delta, d.deltaOffset, `${name}.delta`, rows, E, d.ldDelta, ['f32', 'f16'], false);
        const db = c.vecOrNull(d.deltaBias, `${name}.deltaBias`, E, ['f32']);
        const A = c.vec(d.A, `${name}.A`, E * N, ['f32']);
        const Bm = c.mat(d.Bm, d.bOffset, `${name}.Bm`, rows, N, d.ldB, ['f32', 'f16'], false);
        const Cm = c.mat(d.Cm, d.cOffset, `${name}.Cm`, rows, N, d.ldC, ['f32', 'f16'], false);
        const D = c.vecOrNull(d.D, `${name}.D`, E, ['f32']);
        if (Bm.dtype !== delta.dtype || Cm.dtype !== delta.dtype) c.fail(`'${name}': delta, Bm and Cm must have the same type`);
        return { d, u, uq, delta, db, A, Bm, Cm, D };
      };
      const f = dir(a.fwd, 'fwd');
      const b = dir(a.bwd, 'bwd');
      if (f.u.dtype !== b.u.dtype || f.delta.dtype !== b.delta.dtype) c.fail('both directions must have the same operand types');
      const z = a.z ? c.mat(a.z, a.zOffset, 'z', rows, E, a.ldz, ['f32', 'f16'], false) : null;
      if (z && z.dtype !== f.delta.dtype) c.fail("'z' must have the type of delta");
      const y = c.mat(a.y, a.yOffset, 'y', rows, E, a.ldy, ['f32', 'f16', 'u8'], true);
      const yq = y.dtype === 'u8' ? c.quant(a.yQuant, 'yQuant') : null;
      if (yq?.smooth && yq.smooth.length !== E) c.fail(`'yQuant' has ${yq.smooth.length} smoothing factors, E is ${E}`);
      const combos = ['u8,f16,u8', 'u8,f32,u8', 'f32,f32,u8', 'f16,f16,u8', 'f16,f16,f16', 'f32,f32,f32'];
      const combo = `${f.u.dtype},${f.delta.dtype},${y.dtype}`;
      if (!combos.includes(combo)) c.fail(`bidirectional_scan: unsupported type combination ${combo}`);
      c.checkOverlaps();
      c.run(() => {
        const acc = new Float64Array(rows * E);
        const h = new Float64Array(N);
        for (const [di, s] of [[0, f], [1, b]] as const) {
          const ud = s.u.data;
          const dd = s.delta.data as Float32Array;
          const Bd = s.Bm.data as Float32Array;
          const Cd = s.Cm.data as Float32Array;
          const Ad = s.A.data as Float32Array;
          for (let bi = 0; bi < B; bi++) {
            for (let e = 0; e < E; e++) {
              h.fill(0);
              for (let st = 0; st < L; st++) {
                const row = bi * L + st;
                const t = di === 0 ? st : L - 1 - st;
                const raw = ud[s.d.uOffset + row * s.d.ldu + e]!;
                let u = raw;
                if (s.uq) {
                  const p = row % s.uq.period;
                  u = dequantizeValue(raw, s.uq.zero[p]!, s.uq.scale[p]!, s.uq.smooth ? s.uq.smooth[e]! : 1);
                }
                let dt = dd[s.d.deltaOffset + row * s.d.ldDelta + e]! + (s.db ? (s.db.data as Float32Array)[e]! : 0);
                if (a.deltaSoftplus) dt = dt > 20 ? dt : Math.log1p(Math.exp(dt));
                let o = 0;
                for (let n = 0; n < N; n++) {
                  h[n] = Math.exp(dt * Ad[e * N + n]!) * h[n]! + dt * Bd[s.d.bOffset + row * s.d.ldB + n]! * u;
                  o += h[n]! * Cd[s.d.cOffset + row * s.d.ldC + n]!;
                }
                if (s.D) o += (s.D.data as Float32Array)[e]! * u;
                if (z) {
                  const zv = (z.data as Float32Array)[a.zOffset + (bi * L + t) * a.ldz + e]!;
                  o *= zv / (1 + Math.exp(-zv));
                }
                acc[(bi * L + t) * E + e]! += 0.5 * o;
              }
            }
          }
        }
        for (let r = 0; r < rows; r++) {
          for (let e = 0; e < E; e++) {
            const v = acc[r * E + e]!;
            const i = a.yOffset + r * a.ldy + e;
            if (yq) {
              const p = r % yq.period;
              (y.data as Uint8Array)[i] = quantizeValue(f32(v), yq.invSmooth ? yq.invSmooth[e]! : 1, yq.invScale[p]!, yq.zero[p]!, yq.qmax);
            } else store(y, i, v);
          }
        }
      });
    },
  };
  return k;
}
