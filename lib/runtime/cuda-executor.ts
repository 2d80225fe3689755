import type { Act, LinearSite, Mat, ModelOps, ScanDirection } from '../models/ops.js';
import type { VimLayer, VimModel } from '../models/vim/model.js';
import { aQmax } from '../quant/params.js';
import type { Tensor } from '../tensor/tensor.js';
import {
  cudaKernels, type CudaBufferHandle, type CudaDType, type CudaGraphHandle, type CudaKernels, type CudaQuantHandle,
  type CudaWeightsHandle, type CudaAllocatorStats, type CudaContextHandle, type BiConvDirectionArgs, type BiScanDirectionArgs,
} from '../backend/cuda-kernels.js';

/**
 * fp32: every op in fp32 (SIMT GEMMs); fp16: tensor-core FP16 GEMMs, fp16 activations, fp32
 * residual stream and scan state (the honest baseline); int8: quantized linears on the INT8
 * GEMMs with the input quantization fused into the producing ops, FP linears as in fp16.
 */
export type CudaPrecision = 'fp32' | 'fp16' | 'int8';
/**
 * int8 only. quantized: the fused scan reads the conv output as the u8 codes x_proj consumes
 * (dequantized in registers) — the INT8 design; fp: the conv also writes fp16 for the scan, so
 * only the linears see quantized activations (to measure what quantizing the scan input costs).
 */
export type CudaScanMode = 'quantized' | 'fp';
/**
 * How repeated forwards of one batch size run. The first forward of a batch size runs the ops
 * and records their launches; later ones skip the graph code and replay the recording:
 * 'graph' as one CUDA graph (falls back to 'launches' if capture fails), 'launches' as the
 * recorded binding calls; 'off' runs the ops every time (needed for taps).
 */
export type CudaReplay = 'graph' | 'launches' | 'off';

export interface CudaExecutorOptions {
  precision?: CudaPrecision;
  scan?: CudaScanMode;
  replay?: CudaReplay;
  device?: number;
  /** The kernels (tests pass an emulation); default the addon's. */
  kernels?: CudaKernels;
}

interface DevBuf {
  readonly h: CudaBufferHandle;
  readonly dtype: CudaDType;
  readonly length: number;
}

type MatType = 'f32' | 'f16' | 'u8';

/** A device matrix view: rows × cols from element `offset` of `buf`, row stride ld. */
export interface CudaMat extends Mat {
  readonly buf: DevBuf;
  readonly offset: number;
  readonly dtype: MatType;
  /**
   * L when the rows are in the backward branch's own token order (row b·L + L−1−t holds token
   * t, as the backward-branch parameters are indexed); 0 in token order. toHost restores token order.
   */
  readonly reversedL: number;
  /** u8 views: the quantization parameters of their codes. */
  readonly quant?: CudaQuantHandle;
  /** x_proj outputs: the first columns already quantized for dt_proj by x_proj's epilogue. */
  readonly prefix?: QuantizedAct;
}

/** An activation already quantized for `site` (the `quantized` member of an Act). */
interface QuantizedAct {
  site: LinearSite;
  mat: CudaMat;
}

type Role = 'in_proj' | 'x_proj' | 'dt_proj' | 'out_proj' | 'head';
interface SiteInfo {
  role: Role;
  layer: VimLayer | null;
  dir: 'fwd' | 'bwd' | null;
}

/** Device state of one linear, for the quantization it had when uploaded. */
interface SiteDev {
  quant: LinearSite['quant'];
  bias: DevBuf | null;
  w32?: DevBuf;
  w16?: CudaWeightsHandle;
  w8?: CudaWeightsHandle;
  wScale?: DevBuf;
  /** The site's activation quantization (its producers quantize with it; its epilogue dequantizes). */
  aQuant?: CudaQuantHandle;
}

/** A recorded forward of one batch size: the ops' results in call order and the launches they made. */
interface ForwardRecord {
  key: string;
  steps: { op: string; result: unknown }[];
  launches: (() => void)[];
  input: DevBuf | null;
  output: CudaMat | null;
  valid: boolean;
  graph: CudaGraphHandle | null;
  graphError: string | null;
}

const roundUp = (a: number, b: number): number => Math.ceil(a / b) * b;

/**
 * Executes model graphs on a CUDA device: one context (stream + caching allocator) per
 * executor, every weight and parameter uploaded once at construction, nothing copied to the
 * host inside a forward (toHost at the end waits for the stream). Activation buffers come from
 * a pool keyed by (type, length) and go back to it when a scope ends — never freed while the
 * executor lives, so recorded launches and CUDA graphs stay valid.
 *
 * Layout: the backward branch runs in its own (reversed) token order, from the fused
 * two-direction conv to the scan, so x_proj_b / dt_proj_b see rows in the order their per-token
 * parameters are indexed; toHost (and so every tap) returns token order. u8 views read back
 * through toHost come back dequantized.
 */
export class CudaExecutor implements ModelOps<CudaMat> {
  readonly device = 'cuda' as const;
  readonly precision: CudaPrecision;
  readonly scanMode: CudaScanMode;
  readonly replay: CudaReplay;
  readonly model: VimModel;
  private readonly k: CudaKernels;
  private readonly ctx: CudaContextHandle;
  private readonly pool = new Map<string, DevBuf[]>();
  private scopes: Set<DevBuf>[] = [new Set()];
  private readonly f32 = new Map<Float32Array, DevBuf>();
  private readonly f16Weights = new Map<Float32Array, CudaWeightsHandle>();
  private readonly sites = new Map<LinearSite, SiteDev>();
  private readonly info = new Map<LinearSite, SiteInfo>();
  private readonly persistent: DevBuf[] = [];
  private pendingBwd: { x: CudaMat; weight: Tensor<'F32'>; act: Act<CudaMat> & { fp: CudaMat } } | null = null;
  private readonly records = new Map<string, ForwardRecord>();
  private mode: 'eager' | 'record' | 'replay' = 'eager';
  private current: ForwardRecord | null = null;
  private cursor = 0;
  private disposed = false;

  constructor(model: VimModel, opts: CudaExecutorOptions = {}) {
    this.model = model;
    this.precision = opts.precision ?? (model.isQuantized ? 'int8' : 'fp32');
    this.scanMode = opts.scan ?? 'quantized';
    this.replay = opts.replay ?? 'off';
    this.k = opts.kernels ?? cudaKernels();
    if (this.precision === 'int8') {
      for (const s of model.allLinears()) {
        if (s.quant && s.quant.granularity === 'per-token-dynamic') {
          throw new Error(`${s.name}: per-token-dynamic activation quantization is not supported on CUDA (use per-token-static or per-tensor-static)`);
        }
      }
    }
    this.ctx = this.k.cudaCreateContext(opts.device ?? 0);
    try {
      this.indexSites();
      this.uploadModel();
    } catch (e) {
      this.dispose();
      throw e;
    }
  }

  /** The caching allocator's counters and the device name. */
  stats(): CudaAllocatorStats {
    return this.k.cudaStats(this.ctx);
  }

  /** How the recorded forwards replay: per batch key, 'graph', or the reason capture failed. */
  replayState(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [key, r] of this.records) out[key] = r.graph ? 'graph' : r.graphError ? `launches (graph capture failed: ${r.graphError})` : 'launches';
    return out;
  }

  /**
   * Device time of a recorded forward (key: the images' shape joined by 'x'): its launches
   * replayed `iters` times back to back with no host copies, then one wait; ms per forward.
   * null when that batch shape has no recording yet (replay 'off', or fewer than one forward).
   */
  timeRecorded(key: string, iters: number): number | null {
    const r = this.records.get(key);
    if (!r || this.mode !== 'eager') return null;
    this.runRecorded(r);
    this.k.cudaSynchronize(this.ctx);
    const t0 = performance.now();
    for (let i = 0; i < iters; i++) this.runRecorded(r);
    this.k.cudaSynchronize(this.ctx);
    return (performance.now() - t0) / Math.max(1, iters);
  }

  /** Frees every device resource; the executor is unusable afterwards. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    const k = this.k;
    for (const r of this.records.values()) if (r.graph) k.cudaDispose(r.graph);
    this.records.clear();
    for (const scope of this.scopes) for (const b of scope) k.cudaDispose(b.h);
    for (const list of this.pool.values()) for (const b of list) k.cudaDispose(b.h);
    for (const b of this.persistent) k.cudaDispose(b.h);
    for (const w of this.f16Weights.values()) k.cudaDispose(w);
    for (const d of this.sites.values()) this.disposeSite(d);
    this.pool.clear();
    this.scopes = [new Set()];
    k.cudaDispose(this.ctx);
  }

  // ---- model upload

  private indexSites(): void {
    for (const layer of this.model.layers) {
      this.info.set(layer.inProj, { role: 'in_proj', layer, dir: null });
      this.info.set(layer.outProj, { role: 'out_proj', layer, dir: null });
      for (const dir of ['fwd', 'bwd'] as const) {
        this.info.set(layer[dir].xProj, { role: 'x_proj', layer, dir });
        this.info.set(layer[dir].dtProj, { role: 'dt_proj', layer, dir });
      }
    }
    this.info.set(this.model.head, { role: 'head', layer: null, dir: null });
  }

  private uploadModel(): void {
    const m = this.model;
    for (const name of ['cls_token', 'pos_embed', 'patch_embed.proj.bias', 'norm_f.weight']) this.devF32(m.tensor(name).data);
    const pe = m.tensor('patch_embed.proj.weight');
    if (this.precision === 'fp32') this.devF32(pe.data);
    else this.f16WeightsOf(pe);
    for (const layer of m.layers) {
      this.devF32(layer.norm.data);
      for (const d of [layer.fwd, layer.bwd]) {
        this.devF32(d.conv.weight.data);
        this.devF32(d.conv.bias.data);
        this.devF32(d.A);
        this.devF32(d.D);
        this.devF32(d.dtBias);
      }
    }
    for (const s of m.allLinears()) this.siteDev(s);
    this.siteDev(m.head);
  }

  /** A host fp32 array on the device (uploaded once, persistent). */
  private devF32(a: Float32Array): DevBuf {
    let b = this.f32.get(a);
    if (!b) {
      b = { h: this.k.cudaAlloc(this.ctx, 'f32', a.length, true), dtype: 'f32', length: a.length };
      this.k.cudaUpload(this.ctx, b.h, 0, a);
      this.f32.set(a, b);
      this.persistent.push(b);
    }
    return b;
  }

  /** FP16 tensor-core weights of a tensor [N, ...] viewed as [N, K]. */
  private f16WeightsOf(t: Tensor<'F32'>): CudaWeightsHandle {
    let w = this.f16Weights.get(t.data);
    if (!w) {
      const N = t.dim(0);
      w = this.k.cudaUploadF16Weights(this.ctx, N, t.size / N, t.data);
      this.f16Weights.set(t.data, w);
    }
    return w;
  }

  private siteDev(site: LinearSite): SiteDev {
    const have = this.sites.get(site);
    if (have && have.quant === site.quant) return have;
    if (have) {
      // New quantization (e.g. a calibration changed the model): recordings hold the old handles.
      for (const r of this.records.values()) if (r.graph) this.k.cudaDispose(r.graph);
      this.records.clear();
      this.disposeSite(have);
    }
    const k = this.k;
    const d: SiteDev = { quant: site.quant, bias: site.bias ? this.devF32(site.bias.data) : null };
    const q = site.quant;
    if (this.precision === 'int8' && q) {
      d.w8 = k.cudaUploadInt8Weights(this.ctx, site.outFeatures, site.inFeatures, q.qweight);
      d.wScale = { h: k.cudaAlloc(this.ctx, 'f32', q.wscale.length, true), dtype: 'f32', length: q.wscale.length };
      k.cudaUpload(this.ctx, d.wScale.h, 0, q.wscale);
      d.aQuant = k.cudaQuantParams(this.ctx, q.actScale.length, aQmax(q.abits), q.actScale, q.actZero, q.smooth);
    } else if (this.precision === 'fp32') {
      d.w32 = this.devF32(site.weight.data);
    } else {
      d.w16 = k.cudaUploadF16Weights(this.ctx, site.outFeatures, site.inFeatures, site.weight.data);
    }
    this.sites.set(site, d);
    return d;
  }

  private disposeSite(d: SiteDev): void {
    for (const h of [d.w16, d.w8, d.wScale?.h, d.aQuant]) if (h) this.k.cudaDispose(h);
  }

  /** Whether `site` runs on the INT8 kernels. */
  private int8(site: LinearSite | null): site is LinearSite {
    return this.precision === 'int8' && site !== null && site.quant !== null;
  }

  // ---- memory

  private allocBuf(dtype: CudaDType, length: number): DevBuf {
    const key = `${dtype}:${length}`;
    const b = this.pool.get(key)?.pop() ?? { h: this.k.cudaAlloc(this.ctx, dtype, length, false), dtype, length };
    this.scopes[this.scopes.length - 1]!.add(b);
    return b;
  }

  private release(b: DevBuf): void {
    const key = `${b.dtype}:${b.length}`;
    let list = this.pool.get(key);
    if (!list) this.pool.set(key, (list = []));
    list.push(b);
  }

  private mat(rows: number, cols: number, dtype: MatType, opts: { ld?: number; reversedL?: number; quant?: CudaQuantHandle } = {}): CudaMat {
    const ld = opts.ld ?? cols;
    const buf = this.allocBuf(dtype, Math.max(1, rows * ld));
    return { buf, offset: 0, rows, cols, ld, dtype, reversedL: opts.reversedL ?? 0, quant: opts.quant };
  }

  alloc(rows: number, cols: number): CudaMat {
    return this.step('alloc', () => this.mat(rows, cols, 'f32'));
  }

  beginScope(): void {
    if (this.mode !== 'replay') this.scopes.push(new Set());
  }

  endScope(keep: readonly (CudaMat | null)[]): void {
    if (this.mode === 'replay') return;
    const scope = this.scopes.pop();
    if (!scope || this.scopes.length === 0) throw new Error('CudaExecutor: endScope without beginScope');
    const kept = new Set<DevBuf>();
    for (const m of keep) {
      if (!m) continue;
      kept.add(m.buf);
      if (m.prefix) kept.add(m.prefix.mat.buf);
    }
    const parent = this.scopes[this.scopes.length - 1]!;
    for (const b of scope) {
      if (kept.has(b)) parent.add(b);
      else this.release(b);
    }
  }

  endForward(): void {
    if (this.mode === 'record' && this.current) {
      const r = this.current;
      if (r.valid && r.output && r.input && r.steps.length > 0) this.records.set(r.key, r);
    }
    if (this.mode !== 'replay') {
      for (const scope of this.scopes) for (const b of scope) this.release(b);
    }
    this.scopes = [new Set()];
    this.mode = 'eager';
    this.current = null;
    this.pendingBwd = null;
  }

  colSlice(m: CudaMat, start: number, end: number): CudaMat {
    if (start < 0 || end > m.cols || start > end) throw new RangeError(`colSlice [${start}, ${end}) of ${m.cols} columns`);
    const prefix = start === 0 && m.prefix && end <= m.prefix.mat.cols ? m.prefix : undefined;
    return { ...m, offset: m.offset + start, cols: end - start, prefix };
  }

  // ---- recording and replay

  /** Runs a native call now and, while recording, keeps it for replay. */
  private launch(f: () => void): void {
    f();
    if (this.mode === 'record') this.current!.launches.push(f);
  }

  /** Every op goes through here: replay hands back the recorded result; recording keeps it. */
  private step<T>(op: string, run: () => T): T {
    if (this.mode === 'replay') {
      const s = this.current!.steps[this.cursor++];
      if (!s || s.op !== op) {
        const key = this.current!.key;
        this.records.delete(key);
        this.mode = 'eager';
        throw new Error(`CudaExecutor: the forward of batch ${key} did not repeat its recorded op sequence (${op} vs ${s?.op ?? 'end'}); the recording is dropped`);
      }
      return s.result as T;
    }
    const result = run();
    if (this.mode === 'record') {
      const r = this.current!;
      if (r.output) r.valid = false; // an op after a read-back (taps): not a plain forward
      r.steps.push({ op, result });
    }
    return result;
  }

  /** Starts a forward: decides eager / record / replay for this batch shape. */
  private beginForward(key: string): 'eager' | 'record' | 'replay' {
    if (this.replay === 'off') return (this.mode = 'eager');
    const rec = this.records.get(key);
    if (rec) {
      this.current = rec;
      this.cursor = 0;
      return (this.mode = 'replay');
    }
    this.current = { key, steps: [], launches: [], input: null, output: null, valid: true, graph: null, graphError: null };
    return (this.mode = 'record');
  }

  /** Runs a recorded forward's launches: as its CUDA graph (captured on first use) or one by one. */
  private runRecorded(r: ForwardRecord): void {
    if (this.replay === 'graph' && !r.graph && !r.graphError) {
      try {
        this.k.cudaBeginCapture(this.ctx);
        for (const f of r.launches) f();
        r.graph = this.k.cudaEndCapture(this.ctx);
      } catch (e) {
        try {
          this.k.cudaAbortCapture(this.ctx);
        } catch {
          // the capture is gone already
        }
        r.graphError = (e as Error).message.split('\n')[0]!;
      }
    }
    if (r.graph) this.k.cudaLaunchGraph(this.ctx, r.graph);
    else for (const f of r.launches) f();
  }

  // ---- host transfers

  toHost(m: CudaMat): Float32Array {
    if (this.mode === 'replay') {
      const r = this.current!;
      if (m !== r.output || this.cursor !== r.steps.length) {
        throw new Error('CudaExecutor: only the final output of a replayed forward can be read (use replay: off for taps)');
      }
      this.runRecorded(r);
    } else if (this.mode === 'record') {
      this.current!.output = m;
    }
    let src = m;
    if (m.dtype === 'u8') {
      if (!m.quant) throw new Error('CudaExecutor: a u8 view without quantization parameters cannot be read back');
      // Taps of quantized activations: the values the next op sees (dequantized), in eager mode only.
      src = this.mat(m.rows, m.cols, 'f32', { reversedL: m.reversedL });
      this.k.cudaDequantize(this.ctx, m.rows, m.cols, m.buf.h, m.offset, m.ld, m.quant, src.buf.h, 0, src.ld);
    }
    const data = this.k.cudaDownload(this.ctx, src.buf.h, src.offset, src.rows, src.cols, src.ld) as Float32Array;
    return m.reversedL ? unflipRows(data, m.rows, m.cols, m.reversedL) : data;
  }

  // ---- ops

  patchEmbed(images: Tensor<'F32'>, weight: Tensor<'F32'>, bias: Tensor<'F32'>, stride: number): CudaMat {
    const [B, C, H, W] = images.shape as [number, number, number, number];
    const [D, , P] = weight.shape as [number, number, number, number];
    const mode = this.beginForward(images.shape.join('x'));
    if (mode === 'replay') {
      const r = this.current!;
      this.k.cudaUpload(this.ctx, r.input!.h, 0, images.data);
      return this.step('patchEmbed', () => null as never);
    }
    return this.step('patchEmbed', () => {
      const gh = Math.floor((H - P) / stride) + 1;
      const gw = Math.floor((W - P) / stride) + 1;
      const img = this.allocBuf('f32', images.size);
      this.k.cudaUpload(this.ctx, img.h, 0, images.data);
      if (mode === 'record') this.current!.input = img;
      const out = this.mat(B * gh * gw, D, 'f32');
      const biasBuf = this.devF32(bias.data);
      const { k, ctx } = this;
      if (this.precision === 'fp32') {
        const w = this.devF32(weight.data);
        this.launch(() => k.cudaPatchEmbedF32(ctx, B, C, H, W, P, stride, img.h, w.h, biasBuf.h, D, out.buf.h, 0));
      } else {
        const w = this.f16WeightsOf(weight);
        this.launch(() => k.cudaPatchEmbedF16(ctx, B, C, H, W, P, stride, img.h, w, biasBuf.h, out.buf.h, 0));
      }
      return out;
    });
  }

  assembleTokens(patches: CudaMat, batch: number, clsToken: Tensor<'F32'>, posEmbed: Tensor<'F32'>, clsPos: number): CudaMat {
    return this.step('assembleTokens', () => {
      const D = patches.cols;
      const G = patches.rows / batch;
      const L = posEmbed.dim(1);
      if (L !== G + 1 || patches.ld !== D) throw new Error(`assembleTokens: ${G} patches per image and ${L} positions`);
      const out = this.mat(batch * L, D, 'f32');
      const cls = this.devF32(clsToken.data);
      const pos = this.devF32(posEmbed.data);
      const { k, ctx } = this;
      this.launch(() => k.cudaAssembleTokens(ctx, batch, G, D, patches.buf.h, patches.offset, cls.h, clsPos, pos.h, out.buf.h, 0));
      return out;
    });
  }

  addNorm(x: CudaMat, residual: CudaMat | null, weight: Tensor<'F32'>, eps: number, next: LinearSite | null): { residual: CudaMat; normed: Act<CudaMat> } {
    return this.step('addNorm', () => {
      const rows = x.rows;
      const D = x.cols;
      if (x.ld !== D || x.dtype === 'u8' || x.reversedL) throw new Error('addNorm: x must be a contiguous fp matrix in token order');
      if (residual && (residual.ld !== D || residual.offset !== 0 || residual.dtype !== 'f32')) {
        throw new Error('addNorm: the residual must be a whole contiguous f32 matrix');
      }
      const res = residual ?? this.mat(rows, D, 'f32');
      const w = this.devF32(weight.data);
      let out: CudaMat;
      let normed: Act<CudaMat>;
      let quant: CudaQuantHandle | null = null;
      if (this.int8(next)) {
        quant = this.siteDev(next).aQuant!;
        out = this.mat(rows, D, 'u8', { quant });
        normed = { quantized: { site: next, mat: out } satisfies QuantizedAct };
      } else {
        out = this.mat(rows, D, this.precision === 'fp32' ? 'f32' : 'f16');
        normed = { fp: out };
      }
      const { k, ctx } = this;
      const resIn = residual ? residual.buf.h : null;
      this.launch(() => k.cudaAddRmsNorm(ctx, rows, D, x.buf.h, x.offset, resIn, res.buf.h, w.h, eps, out.buf.h, 0, quant));
      return { residual: res, normed };
    });
  }

  linear(x: Act<CudaMat>, site: LinearSite): CudaMat {
    return this.step('linear', () => (this.int8(site) ? this.int8Linear(x, site) : this.fpLinear(x, site)));
  }

  /** Output layout of a linear: fp16 (fp32 in the fp32 path, and for the logits); x_proj rows padded to 8 halves for dt_proj's tensor-core loads. */
  private outputOf(site: LinearSite, rows: number, reversedL: number): CudaMat {
    const role = this.info.get(site)?.role;
    const dtype: MatType = this.precision === 'fp32' || role === 'head' ? 'f32' : 'f16';
    const ld = role === 'x_proj' && dtype === 'f16' ? roundUp(site.outFeatures, 8) : site.outFeatures;
    return this.mat(rows, site.outFeatures, dtype, { ld, reversedL });
  }

  private int8Linear(x: Act<CudaMat>, site: LinearSite): CudaMat {
    const dev = this.siteDev(site);
    const q = x.quantized as QuantizedAct | undefined;
    let A: CudaMat;
    if (q && q.site === site) A = q.mat;
    else if (x.fp?.prefix && x.fp.prefix.site === site) A = x.fp.prefix.mat;
    else if (x.fp) A = this.quantizeFor(site, x.fp);
    else throw new Error(`${site.name}: the input was quantized for another layer`);
    const out = this.outputOf(site, A.rows, A.reversedL);
    // x_proj's epilogue also quantizes its first dt_rank columns for dt_proj.
    const info = this.info.get(site);
    let prefix: QuantizedAct | undefined;
    let qQuant: CudaQuantHandle | null = null;
    if (info?.role === 'x_proj') {
      const dt = info.layer![info.dir!].dtProj;
      if (this.int8(dt)) {
        qQuant = this.siteDev(dt).aQuant!;
        const R = dt.inFeatures;
        prefix = { site: dt, mat: this.mat(A.rows, R, 'u8', { ld: roundUp(R, 16), reversedL: A.reversedL, quant: qQuant }) };
      }
    }
    const { k, ctx } = this;
    const p = prefix?.mat;
    this.launch(() => k.cudaGemmU8S8(ctx, A.rows, A.buf.h, A.offset, A.ld, dev.w8!, dev.aQuant!, dev.wScale!.h, dev.bias?.h ?? null,
      out.buf.h, out.offset, out.ld, false, p ? p.buf.h : null, 0, p ? p.ld : 0, p ? p.cols : 0, qQuant, null));
    return prefix ? { ...out, prefix } : out;
  }

  private fpLinear(x: Act<CudaMat>, site: LinearSite): CudaMat {
    const dev = this.siteDev(site);
    const src = x.fp ?? (x.quantized as QuantizedAct | undefined)?.mat;
    if (!src) throw new Error(`${site.name}: no input`);
    const want: MatType = this.precision === 'fp32' ? 'f32' : 'f16';
    const A = src.dtype === want ? src : this.convertTo(src, want);
    const out = this.outputOf(site, A.rows, A.reversedL);
    const { k, ctx } = this;
    const bias = dev.bias?.h ?? null;
    if (this.precision === 'fp32') {
      const w = dev.w32!;
      this.launch(() => k.cudaGemmF32(ctx, A.rows, site.outFeatures, site.inFeatures, A.buf.h, A.offset, A.ld, w.h, 0, site.inFeatures,
        bias, false, out.buf.h, 0, out.ld));
    } else {
      const w = dev.w16!;
      this.launch(() => k.cudaGemmF16(ctx, A.rows, A.buf.h, A.offset, A.ld, w, bias, out.buf.h, 0, out.ld, false, null));
    }
    return out;
  }

  /** x quantized with site's parameters (when no producer fused it): u8 rows padded to 16 bytes. */
  private quantizeFor(site: LinearSite, x: CudaMat): CudaMat {
    const quant = this.siteDev(site).aQuant!;
    const src = x.dtype === 'u8' ? this.convertTo(x, 'f16') : x;
    const out = this.mat(src.rows, src.cols, 'u8', { ld: roundUp(src.cols, 16), reversedL: src.reversedL, quant });
    const { k, ctx } = this;
    this.launch(() => k.cudaQuantize(ctx, src.rows, src.cols, src.buf.h, src.offset, src.ld, quant, out.buf.h, 0, out.ld));
    return out;
  }

  /** A copy of m as f32 or f16 (u8 dequantized), rows padded to 16 bytes. */
  private convertTo(m: CudaMat, dtype: 'f32' | 'f16'): CudaMat {
    const out = this.mat(m.rows, m.cols, dtype, { ld: roundUp(m.cols, dtype === 'f16' ? 8 : 4), reversedL: m.reversedL });
    const { k, ctx } = this;
    if (m.dtype === 'u8') {
      if (!m.quant) throw new Error('CudaExecutor: u8 view without quantization parameters');
      const quant = m.quant;
      this.launch(() => k.cudaDequantize(ctx, m.rows, m.cols, m.buf.h, m.offset, m.ld, quant, out.buf.h, 0, out.ld));
    } else {
      this.launch(() => k.cudaConvert(ctx, m.rows, m.cols, m.buf.h, m.offset, m.ld, out.buf.h, 0, out.ld));
    }
    return out;
  }

  /** Whether layer's scan reads the u8 conv output (needs both x_proj and out_proj quantized). */
  private quantizedScan(layer: VimLayer): boolean {
    return this.precision === 'int8' && this.scanMode === 'quantized' && this.int8(layer.fwd.xProj) && this.int8(layer.bwd.xProj) && this.int8(layer.outProj);
  }

  conv1dSilu(x: CudaMat, L: number, weight: Tensor<'F32'>, bias: Tensor<'F32'>, reverse: boolean, next: LinearSite): Act<CudaMat> & { fp: CudaMat } {
    return this.step('conv1dSilu', () => {
      if (x.reversedL || x.dtype === 'u8') throw new Error('conv1dSilu: x must be an fp matrix in token order');
      const p = this.pendingBwd;
      this.pendingBwd = null;
      if (reverse && p && p.x.buf === x.buf && p.x.offset === x.offset && p.weight === weight) return p.act;
      const info = this.info.get(next);
      const layer = info?.layer ?? null;
      // The forward call of a block computes the backward direction too (one pass over x).
      const both = !reverse && layer !== null && info?.dir === 'fwd';
      const E = x.cols;
      const rows = x.rows;
      const B = rows / L;
      const K = weight.dim(1);
      const dirArgs = (site: LinearSite, w: Tensor<'F32'>, b: Tensor<'F32'>, rev: boolean, lay: VimLayer | null) => {
        const quantOut = this.int8(site);
        const u8Scan = lay !== null && this.quantizedScan(lay);
        const quant = quantOut ? this.siteDev(site).aQuant! : undefined;
        const u8 = quantOut ? this.mat(rows, E, 'u8', { ld: roundUp(E, 16), reversedL: rev ? L : 0, quant }) : null;
        const fp = u8 && u8Scan ? null : this.mat(rows, E, this.precision === 'fp32' ? 'f32' : 'f16', { reversedL: rev ? L : 0 });
        const args: BiConvDirectionArgs = {
          weight: this.devF32(w.data).h, bias: this.devF32(b.data).h,
          u8: u8?.buf.h ?? null, u8Offset: 0, ldU8: u8?.ld ?? 0, quant: quant ?? null,
          out: fp?.buf.h ?? null, outOffset: 0, ldOut: fp?.ld ?? 0,
        };
        const act: Act<CudaMat> & { fp: CudaMat } = { fp: (fp ?? u8)!, quantized: u8 ? ({ site, mat: u8 } satisfies QuantizedAct) : undefined };
        return { args, act };
      };
      const { k, ctx } = this;
      const self = dirArgs(next, weight, bias, reverse, layer);
      if (both) {
        const bwdParams = layer!.bwd;
        const other = dirArgs(bwdParams.xProj, bwdParams.conv.weight, bwdParams.conv.bias, true, layer);
        this.launch(() => k.cudaBiConv(ctx, B, L, E, K, x.buf.h, x.offset, x.ld, self.args, other.args));
        this.pendingBwd = { x, weight: bwdParams.conv.weight, act: other.act };
      } else {
        const [f, b] = reverse ? [null, self.args] : [self.args, null];
        this.launch(() => k.cudaBiConv(ctx, B, L, E, K, x.buf.h, x.offset, x.ld, f, b));
      }
      return self.act;
    });
  }

  bidirectionalScan(dirs: readonly [ScanDirection<CudaMat>, ScanDirection<CudaMat>], z: CudaMat, L: number, next: LinearSite): Act<CudaMat> {
    return this.step('bidirectionalScan', () => {
      const [f, b] = dirs[0].reverse ? [dirs[1], dirs[0]] : [dirs[0], dirs[1]];
      if (f.reverse || !b.reverse) throw new Error('bidirectionalScan: needs one forward and one backward direction');
      for (const m of [f.u, f.delta, f.B, f.C]) if (m.reversedL) throw new Error('bidirectionalScan: forward operands must be in token order');
      for (const m of [b.u, b.delta, b.B, b.C]) if (m.reversedL !== L) throw new Error('bidirectionalScan: backward operands must be in the backward branch order');
      if (z.reversedL) throw new Error('bidirectionalScan: z must be in token order');
      const E = z.cols;
      const rows = z.rows;
      const N = f.B.cols;
      const dir = (d: ScanDirection<CudaMat>): BiScanDirectionArgs => ({
        u: d.u.buf.h, uOffset: d.u.offset, ldu: d.u.ld, uQuant: d.u.dtype === 'u8' ? d.u.quant ?? null : null,
        delta: d.delta.buf.h, deltaOffset: d.delta.offset, ldDelta: d.delta.ld, deltaBias: this.devF32(d.deltaBias).h,
        A: this.devF32(d.A).h, Bm: d.B.buf.h, bOffset: d.B.offset, ldB: d.B.ld, Cm: d.C.buf.h, cOffset: d.C.offset, ldC: d.C.ld,
        D: this.devF32(d.D).h,
      });
      let y: CudaMat;
      let yQuant: CudaQuantHandle | null = null;
      let result: Act<CudaMat>;
      if (this.int8(next)) {
        yQuant = this.siteDev(next).aQuant!;
        y = this.mat(rows, E, 'u8', { ld: roundUp(E, 16), quant: yQuant });
        result = { quantized: { site: next, mat: y } satisfies QuantizedAct };
      } else {
        y = this.mat(rows, E, this.precision === 'fp32' ? 'f32' : 'f16');
        result = { fp: y };
      }
      const args = {
        B: rows / L, L, E, N, fwd: dir(f), bwd: dir(b), z: z.buf.h, zOffset: z.offset, ldz: z.ld, deltaSoftplus: true,
        y: y.buf.h, yOffset: 0, ldy: y.ld, yQuant,
      };
      const { k, ctx } = this;
      this.launch(() => k.cudaBiScan(ctx, args));
      return result;
    });
  }

  gatherRows(m: CudaMat, start: number, step: number, count: number): CudaMat {
    return this.step('gatherRows', () => {
      if (m.rows !== count * step || m.ld !== m.cols || start >= step || m.reversedL || m.dtype === 'u8') {
        throw new Error('gatherRows: needs a contiguous fp matrix of count·step rows in token order');
      }
      const out = this.mat(count, m.cols, m.dtype);
      const { k, ctx } = this;
      this.launch(() => k.cudaGatherToken(ctx, count, step, m.cols, start, m.buf.h, m.offset, out.buf.h, 0));
      return out;
    });
  }
}

/** Rows b·L + L−1−t → b·L + t (per image) of a dense [rows, cols] array. */
function unflipRows(x: Float32Array, rows: number, cols: number, L: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let b = 0; b < rows / L; b++) {
    for (let t = 0; t < L; t++) out.set(x.subarray((b * L + L - 1 - t) * cols, (b * L + L - t) * cols), (b * L + t) * cols);
  }
  return out;
}
