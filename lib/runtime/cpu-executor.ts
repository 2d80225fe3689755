import type { Act, Grid, LinearSite, Mat, ModelOps, ScanDirection, TokenOrder } from '../models/ops.js';
import { aQmax, paramsInOriginalOrder, wQmax, type LinearQuant } from '../quant/params.js';
import { Tensor } from '../tensor/tensor.js';
import { alignedFloat32Array, alignedUint8Array, cpuKernels, type MathMode, type PackedInt8, type ScanDtProjF32, type ScanDtProjInt8, type TokenQuantizer } from '../backend/cpu-kernels.js';
import { backboneKernels, type BackboneKernels } from '../backend/backbone-kernels.js';

/** A host matrix view: `data` starts at element (0, 0). */
export interface CpuMat extends Mat {
  readonly data: Float32Array;
  /** The pooled buffer this view lives in. */
  readonly buffer: Float32Array;
}

/** How quantized linears run on the CPU: real INT8 kernels, their fp32 simulation, or ignored (FP weights). */
export type QuantMode = 'int8' | 'fake' | 'off';

/**
 * How repeated forwards of one input shape run (runForward). 'launches': the first forward of a
 * shape runs the graph and records its kernel calls (and the few JS loops over activations);
 * later ones replay the recording back to back, without the graph code, the executor's
 * bookkeeping or the cache misses of JS run between kernels. 'off': the graph runs every time.
 */
export type CpuReplay = 'launches' | 'off';

/** The replay mode PTQ4VM_CPU_REPLAY asks for (off | launches), else 'launches'. */
export function cpuReplayFromEnv(): CpuReplay {
  return process.env.PTQ4VM_CPU_REPLAY === 'off' ? 'off' : 'launches';
}

/** One recorded forward (see CpuReplay). */
interface CpuRecording {
  /** Every kernel call and activation loop of the forward, in order. */
  readonly launches: (() => void)[];
  /** The images the recorded calls read: each replay points it at its own input first. */
  readonly input: { data: Float32Array };
  /** The logits matrix (the one toHost read). */
  output: CpuMat | null;
  /** False once the forward did something a replay cannot repeat (see runForward). */
  valid: boolean;
}

/** u8 codes of an activation, quantized by a fused producer for one specific linear. */
export interface QuantizedRows {
  site: LinearSite;
  codes: Uint8Array;
  ld: number;
}

/** Per-site values derived once from a LinearQuant (reciprocals, dequantized or packed weights). */
interface SiteCache {
  quant: LinearQuant;
  invSmooth: Float32Array;
  /** Activation parameters in original token order (see paramsInOriginalOrder). */
  actScale: Float32Array;
  actZero: Int32Array;
  invScale: Float32Array;
  qmax: number;
  dequantWeight?: Float32Array;
  packed?: PackedInt8;
}

/**
 * Executes model graphs on the CPU. FP linears run the FP32 GEMM; quantized ones run as
 * `quantMode` says. Buffers come from a size-keyed pool and go back to it when a scope ends,
 * so a forward allocates O(one block) of memory however deep the model is.
 */
export class CpuExecutor implements ModelOps<CpuMat> {
  readonly device = 'cpu' as const;
  readonly quantMode: QuantMode;
  private readonly pool = new Map<number, Float32Array[]>();
  private scopes: Set<Float32Array>[] = [new Set()];
  private readonly siteCache = new WeakMap<LinearSite, SiteCache>();
  private readonly k = cpuKernels();
  /**
   * dt_proj outputs not computed yet (see deferDtProj): bidirectionalScan computes Δ inside the
   * scan from dt_proj's input instead — INT8 bit for bit as the GEMM would, FP32 to float
   * rounding — so Δ never goes through memory (Vim-Ti batch 8 on the 2-core Zen 4: a few percent
   * of either forward; the GEMM's stores of Δ and the scan's loads of it cost more than the
   * products in the scan).
   */
  private readonly pendingDtProj = new WeakMap<CpuMat, { dtProj: ScanDtProjInt8 } | { dtProjF32: ScanDtProjF32 }>();

  /** Whether dt_proj outputs (INT8 and FP32 alike) are computed inside the bidirectional scan (pendingDtProj). */
  readonly fuseDtProj: boolean;

  /**
   * The math (MathMode) of the ops whose output feeds a quantized linear: the bidirectional scan
   * before out_proj, the conv1d + SiLU before x_proj, and the other backbones' directional scans,
   * whose outputs reach out_proj through gathers, gates and norms. 'fast' in the quantized modes (int8 and
   * its simulation alike, so the two keep computing the same values), else — and everywhere with
   * PTQ4VM_EXACT_SCAN=1 — 'exact'. Every other op (fp32 mode, FP models, FP linears) is exact.
   * See docs/design.md, numerics.
   */
  readonly quantizedMath: MathMode;

  /** u8 code buffers by length, reused across ops like the fp32 pool (see allocCodes). */
  private readonly codePool = new Map<number, Uint8Array[]>();
  private codeScopes: Uint8Array[][] = [[]];

  /** See CpuReplay; only runForward records and replays. */
  readonly replay: CpuReplay;
  /** Recorded forwards by input shape. */
  private readonly recordings = new Map<string, CpuRecording>();
  /** The forward being recorded, if any. */
  private recording: CpuRecording | null = null;

  /** opts.quantizedMath overrides the choice (and the environment) for tests and benchmarks. */
  constructor(opts: { quantMode?: QuantMode; fuseDtProj?: boolean; quantizedMath?: MathMode; replay?: CpuReplay } = {}) {
    this.quantMode = opts.quantMode ?? 'int8';
    this.replay = opts.replay ?? 'off';
    this.fuseDtProj = opts.fuseDtProj ?? true;
    this.quantizedMath =
      opts.quantizedMath ?? (this.quantMode === 'off' || process.env.PTQ4VM_EXACT_SCAN === '1' ? 'exact' : 'fast');
  }

  get precision(): string {
    return { int8: 'int8', fake: 'fake-quant', off: 'fp32' }[this.quantMode];
  }

  // ---- recording and replay

  /**
   * One forward of `images` to logits: `forward` builds it with this executor's ops (it must read
   * `images` only through patchEmbed / conv2dImages). With replay 'launches' the first forward
   * of an input shape is recorded and the later ones replay it; a forward that reads anything
   * back but its output, or copies host data in (fromHost), is not kept, and runs every time.
   * The model (weights, quantization) must not change between forwards of one executor.
   */
  runForward(images: Tensor<'F32'>, forward: () => CpuMat): Float32Array {
    const key = images.shape.join('x');
    const rec = this.replay === 'launches' ? this.recordings.get(key) : undefined;
    if (rec) {
      rec.input.data = images.data;
      try {
        for (const f of rec.launches) f();
        return this.copyOut(rec.output!);
      } finally {
        rec.input.data = NO_IMAGES; // the caller's images are not kept alive between forwards
      }
    }
    if (this.replay === 'launches') this.recording = { launches: [], input: { data: images.data }, output: null, valid: true };
    try {
      const logits = this.toHost(forward());
      const r = this.recording;
      if (r?.valid && r.output) this.recordings.set(key, r);
      return logits;
    } finally {
      if (this.recording) this.recording.input.data = NO_IMAGES;
      this.recording = null;
      this.endForward();
    }
  }

  /** How many input shapes have a recorded forward (tests). */
  get recordedShapes(): number {
    return this.recordings.size;
  }

  /** Runs a kernel call (or a JS loop over activations) now and, while recording, keeps it for replay. */
  private launch(f: () => void): void {
    f();
    const r = this.recording;
    if (r) {
      if (r.output) r.valid = false; // an op after the read-back: not a plain forward
      r.launches.push(f);
    }
  }

  /** The images of the forward: a slot a replay repoints (the recording's), else the array itself. */
  private inputOf(images: Tensor<'F32'>): { data: Float32Array } {
    const r = this.recording;
    if (!r) return { data: images.data };
    if (r.input.data !== images.data) r.valid = false; // not the images runForward was given
    return r.input;
  }

  // ---- memory

  alloc(rows: number, cols: number): CpuMat {
    const n = rows * cols;
    const free = this.pool.get(n);
    const buffer = free?.pop() ?? alignedFloat32Array(n);
    this.scopes[this.scopes.length - 1]!.add(buffer);
    return { data: buffer, buffer, rows, cols, ld: cols };
  }

  /**
   * A u8 buffer for activation codes, returned to a pool when the current scope ends. Codes
   * never outlive their block (each feeds the next linear of the same mixer), and a fresh
   * Uint8Array per op cost the INT8 forward ~3 % (zero-filling and page faults).
   */
  private allocCodes(n: number): Uint8Array {
    const codes = this.codePool.get(n)?.pop() ?? alignedUint8Array(n);
    this.codeScopes[this.codeScopes.length - 1]!.push(codes);
    return codes;
  }

  private releaseCodes(list: Uint8Array[]): void {
    for (const c of list) {
      let free = this.codePool.get(c.length);
      if (!free) this.codePool.set(c.length, (free = []));
      free.push(c);
    }
  }

  beginScope(): void {
    this.scopes.push(new Set());
    this.codeScopes.push([]);
  }

  /** Returns every buffer allocated since beginScope to the pool, except those `keep` views live in. */
  endScope(keep: readonly (CpuMat | null)[]): void {
    const scope = this.scopes.pop();
    if (!scope || this.scopes.length === 0) throw new Error('CpuExecutor: endScope without beginScope');
    const kept = new Set(keep.filter((m): m is CpuMat => m !== null).map((m) => m.buffer));
    const parent = this.scopes[this.scopes.length - 1]!;
    for (const b of scope) {
      if (kept.has(b)) parent.add(b);
      else this.release(b);
    }
    this.releaseCodes(this.codeScopes.pop() ?? []);
  }

  endForward(): void {
    for (const scope of this.scopes) for (const b of scope) this.release(b);
    this.scopes = [new Set()];
    for (const list of this.codeScopes) this.releaseCodes(list);
    this.codeScopes = [[]];
  }

  private release(b: Float32Array): void {
    let list = this.pool.get(b.length);
    if (!list) this.pool.set(b.length, (list = []));
    list.push(b);
  }

  colSlice(m: CpuMat, start: number, end: number): CpuMat {
    if (start < 0 || end > m.cols || start > end) throw new RangeError(`colSlice [${start}, ${end}) of ${m.cols} columns`);
    return { data: m.data.subarray(start), buffer: m.buffer, rows: m.rows, cols: end - start, ld: m.ld };
  }

  toHost(m: CpuMat): Float32Array {
    const r = this.recording;
    if (r) {
      if (r.output) r.valid = false; // a second read-back (taps)
      else r.output = m;
    }
    return this.copyOut(m);
  }

  private copyOut(m: CpuMat): Float32Array {
    const out = new Float32Array(m.rows * m.cols);
    for (let r = 0; r < m.rows; r++) out.set(m.data.subarray(r * m.ld, r * m.ld + m.cols), r * m.cols);
    return out;
  }

  /** Wraps host data as a matrix (copied into a pooled buffer). */
  fromHost(data: Float32Array, rows: number, cols: number): CpuMat {
    if (this.recording) this.recording.valid = false; // host data a replay would not see change
    const m = this.alloc(rows, cols);
    m.data.set(data.subarray(0, rows * cols));
    return m;
  }

  // ---- ops

  patchEmbed(images: Tensor<'F32'>, weight: Tensor<'F32'>, bias: Tensor<'F32'>, stride: number): CpuMat {
    const [B, C, H, W] = images.shape as [number, number, number, number];
    const [D, , P] = weight.shape as [number, number, number, number];
    const gh = Math.floor((H - P) / stride) + 1;
    const gw = Math.floor((W - P) / stride) + 1;
    const out = this.alloc(B * gh * gw, D);
    const input = this.inputOf(images);
    this.launch(() => this.k.patchEmbedF32(B, C, H, W, P, stride, input.data, weight.data, bias.data, D, out.data));
    return out;
  }

  assembleTokens(patches: CpuMat, batch: number, clsToken: Tensor<'F32'>, posEmbed: Tensor<'F32'>, clsPos: number): CpuMat {
    const D = patches.cols;
    const L = posEmbed.dim(1);
    const G = patches.rows / batch;
    const out = this.alloc(batch * L, D);
    const o = out.data, pos = posEmbed.data, cls = clsToken.data, src = patches.data, ld = patches.ld;
    // Plain index loops: a typed-array view per token cost ~1 ms of a Vim-Ti batch-8 forward.
    this.launch(() => {
      for (let b = 0; b < batch; b++) {
        for (let t = 0; t < L; t++) {
          const dst = (b * L + t) * D, p = t * D;
          if (t === clsPos) {
            for (let j = 0; j < D; j++) o[dst + j] = cls[j]! + pos[p + j]!;
          } else {
            const s = (b * G + (t < clsPos ? t : t - 1)) * ld;
            for (let j = 0; j < D; j++) o[dst + j] = src[s + j]! + pos[p + j]!;
          }
        }
      }
    });
    return out;
  }

  addNorm(x: CpuMat, residual: CpuMat | null, weight: Tensor<'F32'>, eps: number, next: LinearSite | null): { residual: CpuMat; normed: Act<CpuMat> } {
    const rows = x.rows;
    const D = x.cols;
    if (x.ld !== D || (residual && residual.ld !== D)) throw new Error('addNorm: operands must be contiguous');
    const res = residual ?? this.alloc(rows, D);
    const fused = this.fusedQuantizer(next);
    if (fused) {
      // INT8: in_proj's quantized input straight from the norm; the fp32 rows are never written.
      const codes = this.allocCodes(rows * D);
      this.launch(() => this.k.addRmsNormQuantizeF32(rows, D, x.data, residual ? residual.data : null, res.data, weight.data, eps, null,
        fused.period, fused.invSmooth ?? null, fused.invScale, fused.zero, fused.qmax, codes, D));
      return { residual: res, normed: { quantized: { site: next!, codes, ld: D } satisfies QuantizedRows } };
    }
    const normed = this.alloc(rows, D);
    this.launch(() => this.k.addRmsNormF32(rows, D, x.data, residual ? residual.data : null, res.data, weight.data, eps, normed.data));
    return { residual: res, normed: { fp: normed } };
  }

  linear(x: Act<CpuMat>, site: LinearSite): CpuMat {
    const q = this.quantMode === 'off' ? null : site.quant;
    if (q && this.quantMode === 'int8') return this.int8Linear(x, site, this.cacheFor(site, q));
    const a = x.fp;
    if (!a) throw new Error(`${site.name}: the CPU executor needs the fp32 input`);
    const out = this.alloc(a.rows, site.outFeatures);
    if (!q) {
      const gemm = () => this.launch(() => this.k.gemmF32(false, true, a.rows, site.outFeatures, site.inFeatures, a.data, a.ld, site.weight.data,
        site.inFeatures, site.bias ? site.bias.data : null, false, out.data, out.ld));
      if (this.defersDtProj(site)) {
        return this.deferDtProj(out, gemm, { dtProjF32: { R: site.inFeatures, x: a.data, ldx: a.ld, weight: site.weight.data } });
      }
      gemm();
      return out;
    }
    const cache = this.cacheFor(site, q);
    // Simulation: dequantize(quantize(x/σ)) · dequantize(qweight)ᵀ in fp32.
    const deq = this.fakeQuantizeActivation(a, cache);
    const weight = (cache.dequantWeight ??= dequantizeWeights(q, site.outFeatures, site.inFeatures));
    this.launch(() => this.k.gemmF32(false, true, a.rows, site.outFeatures, site.inFeatures, deq.data, deq.ld, weight, site.inFeatures,
      site.bias ? site.bias.data : null, false, out.data, out.ld));
    return out;
  }

  conv1dSilu(x: CpuMat, L: number, weight: Tensor<'F32'>, bias: Tensor<'F32'>, reverse: boolean, next: LinearSite): Act<CpuMat> & { fp: CpuMat } {
    const E = x.cols;
    const out = this.alloc(x.rows, E);
    const fused = this.fusedQuantizer(next);
    const siluMath = this.mathFeeding(next);
    if (fused) {
      // The scan needs the fp32 values, x_proj their quantization: both from one pass.
      const codes = this.allocCodes(x.rows * E);
      this.launch(() => this.k.causalConv1dSiluQuantizeF32(x.rows / L, L, E, weight.dim(1), x.data, x.ld, weight.data, bias.data, reverse, out.data, out.ld,
        fused.period, fused.invSmooth ?? null, fused.invScale, fused.zero, fused.qmax, codes, E, siluMath));
      return { fp: out, quantized: { site: next, codes, ld: E } satisfies QuantizedRows };
    }
    this.launch(() => this.k.causalConv1dF32(x.rows / L, L, E, weight.dim(1), x.data, x.ld, weight.data, bias.data, reverse, true, out.data, out.ld,
      siluMath));
    return { fp: out };
  }

  /** The math of an op whose output feeds `next` (see quantizedMath). */
  private mathFeeding(next: LinearSite): MathMode {
    return this.quantMode !== 'off' && next.quant ? this.quantizedMath : 'exact';
  }

  bidirectionalScan(dirs: readonly [ScanDirection<CpuMat>, ScanDirection<CpuMat>], z: CpuMat, L: number, next: LinearSite): Act<CpuMat> {
    const E = z.cols;
    const dir = (d: ScanDirection<CpuMat>) => {
      const common = { u: d.u.data, ldu: d.u.ld, A: d.A, Bm: d.B.data, ldB: d.B.ld, Cm: d.C.data, ldC: d.C.ld, D: d.D, deltaBias: d.deltaBias };
      const pending = this.pendingDtProj.get(d.delta);
      return pending ? { ...common, ...pending } : { ...common, delta: d.delta.data, lddelta: d.delta.ld };
    };
    const args = {
      B: z.rows / L, L, E, N: dirs[0].B.cols, fwd: dir(dirs[0]), bwd: dir(dirs[1]), z: z.data, ldz: z.ld, deltaSoftplus: true,
      math: this.mathFeeding(next),
    };
    const fused = this.fusedQuantizer(next);
    if (fused) {
      // INT8: the combined, gated output goes straight to out_proj's u8 input.
      const codes = this.allocCodes(z.rows * E);
      this.launch(() => this.k.selectiveScanBidirF32({ ...args, q: codes, ldq: E, quant: fused }));
      return { quantized: { site: next, codes, ld: E } satisfies QuantizedRows };
    }
    const y = this.alloc(z.rows, E);
    this.launch(() => this.k.selectiveScanBidirF32({ ...args, y: y.data, ldy: y.ld }));
    return { fp: y };
  }

  gatherRows(m: CpuMat, start: number, step: number, count: number): CpuMat {
    const out = this.alloc(count, m.cols);
    this.launch(() => {
      for (let i = 0; i < count; i++) {
        const r = start + i * step;
        out.data.set(m.data.subarray(r * m.ld, r * m.ld + m.cols), i * m.cols);
      }
    });
    return out;
  }

  // ---- quantization helpers

  /** The quantizer a producer should fuse for `next`, when `next` runs on the INT8 kernels with static parameters. */
  private fusedQuantizer(next: LinearSite | null): (TokenQuantizer & { period: number }) | null {
    if (this.quantMode !== 'int8' || !next?.quant || next.quant.granularity === 'per-token-dynamic') return null;
    const c = this.cacheFor(next, next.quant);
    return { period: c.actScale.length, invSmooth: c.invSmooth, invScale: c.invScale, zero: c.actZero, qmax: c.qmax };
  }

  /** u8 × s8 GEMM with the dequantizing epilogue; quantizes the input unless a producer did. */
  private int8Linear(x: Act<CpuMat>, site: LinearSite, c: SiteCache): CpuMat {
    const q = c.quant;
    const K = site.inFeatures;
    const N = site.outFeatures;
    c.packed ??= this.k.packInt8Weights(N, K, q.qweight);
    const pre = x.quantized as QuantizedRows | undefined;
    let codes: Uint8Array;
    let ld: number;
    let rows: number;
    let scale = c.actScale;
    let zero = c.actZero;
    let period = c.actScale.length;
    if (pre && pre.site === site && q.granularity !== 'per-token-dynamic') {
      codes = pre.codes;
      ld = pre.ld;
      rows = codes.length / ld;
    } else {
      const a = x.fp;
      if (!a) throw new Error(`${site.name}: no input for the INT8 GEMM`);
      rows = a.rows;
      ld = K;
      codes = this.allocCodes(rows * K);
      let invScale = c.invScale;
      if (q.granularity === 'per-token-dynamic') {
        period = rows;
        scale = new Float32Array(rows);
        invScale = new Float32Array(rows);
        zero = new Int32Array(rows);
        this.launch(() => this.k.quantizeParamsDynamic(rows, K, a.data, a.ld, c.invSmooth, c.qmax, scale, invScale, zero));
      }
      this.launch(() => this.k.quantizeU8(rows, K, period, a.data, a.ld, c.invSmooth, invScale, zero, c.qmax, codes, K));
    }
    const out = this.alloc(rows, N);
    const packed = c.packed;
    const gemm = () => this.launch(() => this.k.gemmU8S8F32(rows, N, K, codes, ld, packed, scale, zero, period, q.wscale, site.bias ? site.bias.data : null,
      false, out.data, out.ld));
    if (this.defersDtProj(site)) {
      return this.deferDtProj(out, gemm, { dtProj: { R: K, q: codes, ldq: ld, period, aScale: scale, aZero: zero, qweight: q.qweight, wScale: q.wscale } });
    }
    gemm();
    return out;
  }

  /** Whether `site` is a dt_proj whose output the bidirectional scan can compute itself (pendingDtProj). */
  private defersDtProj(site: LinearSite): boolean {
    return this.fuseDtProj && DT_PROJ.test(site.name) && !site.bias && site.inFeatures <= 512;
  }

  /**
   * `out` as a lazy matrix: the scan computes Δ from `pending` instead (pendingDtProj); reading
   * `data` runs `gemm` first, so any other consumer sees the values the GEMM writes.
   */
  private deferDtProj(out: CpuMat, gemm: () => void, pending: { dtProj: ScanDtProjInt8 } | { dtProjF32: ScanDtProjF32 }): CpuMat {
    let done = false;
    const lazy: CpuMat = {
      buffer: out.buffer, rows: out.rows, cols: out.cols, ld: out.ld,
      get data() {
        if (!done) {
          done = true;
          gemm();
        }
        return out.data;
      },
    };
    this.pendingDtProj.set(lazy, pending);
    return lazy;
  }

  private cacheFor(site: LinearSite, q: LinearQuant): SiteCache {
    let c = this.siteCache.get(site);
    if (!c || c.quant !== q) {
      const { scale, zero } = paramsInOriginalOrder(q, site.reversedTokens);
      c = { quant: q, invSmooth: reciprocal(q.smooth), actScale: scale, actZero: zero, invScale: reciprocal(scale), qmax: aQmax(q.abits) };
      this.siteCache.set(site, c);
    }
    return c;
  }

  /** x/σ quantized with the site's activation parameters and dequantized again: [rows, cols]. */
  private fakeQuantizeActivation(a: CpuMat, c: SiteCache): CpuMat {
    const q = c.quant;
    const { rows, cols } = a;
    const qmax = aQmax(q.abits);
    let period = c.actScale.length;
    let scale = c.actScale;
    let invScale = c.invScale;
    let zero = c.actZero;
    if (q.granularity === 'per-token-dynamic') {
      period = rows;
      scale = new Float32Array(rows);
      invScale = new Float32Array(rows);
      zero = new Int32Array(rows);
      this.launch(() => this.k.quantizeParamsDynamic(rows, cols, a.data, a.ld, c.invSmooth, qmax, scale, invScale, zero));
    }
    const codes = this.allocCodes(rows * cols);
    this.launch(() => this.k.quantizeU8(rows, cols, period, a.data, a.ld, c.invSmooth, invScale, zero, qmax, codes, cols));
    const out = this.alloc(rows, cols);
    const d = out.data;
    this.launch(() => {
      for (let r = 0; r < rows; r++) {
        const p = r % period;
        const s = scale[p]!;
        const z = zero[p]!;
        const o = r * cols;
        for (let j = 0; j < cols; j++) d[o + j] = (codes[o + j]! - z) * s;
      }
    });
    return out;
  }

  // ---- ops of the other backbones (BackboneOps in ../models/ops.ts): LocalVim, VMamba, LocalVMamba

  private get bk(): BackboneKernels {
    return backboneKernels();
  }

  gatherTokens(x: CpuMat, batch: number, order: TokenOrder): CpuMat {
    const out = this.alloc(batch * order.steps, x.cols);
    this.launch(() => this.bk.gatherTokensF32(batch, order.rows, order.steps, x.cols, x.data, x.ld, order.gather, out.data, out.ld));
    return out;
  }

  scatterTokens(y: CpuMat, batch: number, order: TokenOrder, out: CpuMat, accumulate: boolean, gate: CpuMat | null): void {
    if (gate && gate.ld !== gate.cols) throw new Error('scatterTokens: the gate must be contiguous');
    this.launch(() => this.bk.scatterTokensF32(batch, order.steps, order.rows, y.cols, y.data, y.ld, order.scatter, gate ? gate.data : null, accumulate, out.data, out.ld));
  }

  layerNorm(x: CpuMat, weight: Tensor<'F32'>, bias: Tensor<'F32'> | null, eps: number, _next: LinearSite | null): Act<CpuMat> & { fp: CpuMat } {
    const out = this.alloc(x.rows, x.cols);
    this.launch(() => this.bk.layerNormF32(x.rows, x.cols, x.data, x.ld, weight.data, bias ? bias.data : null, eps, out.data, out.ld));
    return { fp: out };
  }

  layerNormTokenMean(x: CpuMat, batch: number, weight: Tensor<'F32'>, bias: Tensor<'F32'> | null, eps: number, select: TokenOrder | null): CpuMat {
    const out = this.alloc(batch, x.cols);
    this.launch(() => this.bk.layerNormTokenMeanF32(batch, x.rows / batch, x.cols, x.data, x.ld, select ? select.scatter : null, weight.data, bias ? bias.data : null, eps, out.data));
    return out;
  }

  selectiveScan(d: ScanDirection<CpuMat>, z: CpuMat | null, L: number, next: LinearSite | null): Act<CpuMat> & { fp: CpuMat } {
    const E = d.u.cols;
    const y = this.alloc(d.u.rows, E);
    const pending = this.pendingDtProj.get(d.delta);
    const delta = pending ?? { delta: d.delta.data, lddelta: d.delta.ld };
    this.launch(() => this.k.selectiveScanF32({
      B: d.u.rows / L, L, E, N: d.B.cols,
      u: d.u.data, ldu: d.u.ld, ...delta, A: d.A,
      Bm: d.B.data, ldB: d.B.ld, Cm: d.C.data, ldC: d.C.ld, D: d.D, z: z ? z.data : null, ldz: z ? z.ld : 0,
      deltaBias: d.deltaBias, deltaSoftplus: true, reverse: d.reverse, y: y.data, ldy: y.ld,
      math: next ? this.mathFeeding(next) : 'exact',
    }));
    return { fp: y };
  }

  gelu(x: CpuMat, _next: LinearSite | null): Act<CpuMat> & { fp: CpuMat } {
    const out = this.alloc(x.rows, x.cols);
    this.launch(() => this.bk.geluF32(x.rows, x.cols, x.data, x.ld, out.data, out.ld));
    return { fp: out };
  }

  sigmoid(x: CpuMat): CpuMat {
    const out = this.alloc(x.rows, x.cols);
    this.launch(() => this.bk.sigmoidF32(x.rows, x.cols, x.data, x.ld, out.data, out.ld));
    return out;
  }

  mulSilu(x: CpuMat, z: CpuMat, _next: LinearSite | null): Act<CpuMat> & { fp: CpuMat } {
    const out = this.alloc(x.rows, x.cols);
    this.launch(() => this.bk.mulSiluF32(x.rows, x.cols, x.data, x.ld, z.data, z.ld, out.data, out.ld));
    return { fp: out };
  }

  add(a: CpuMat, b: CpuMat): CpuMat {
    const out = this.alloc(a.rows, a.cols);
    this.launch(() => this.bk.addF32(a.rows, a.cols, a.data, a.ld, b.data, b.ld, out.data, out.ld));
    return out;
  }

  addPositions(x: CpuMat, batch: number, table: Tensor<'F32'>): CpuMat {
    const out = this.alloc(x.rows, x.cols);
    this.launch(() => this.bk.addPositionsF32(batch, x.rows / batch, x.cols, x.data, x.ld, table.data, out.data, out.ld));
    return out;
  }

  rope(x: CpuMat, batch: number, cos: Tensor<'F32'>, sin: Tensor<'F32'>): CpuMat {
    const out = this.alloc(x.rows, x.cols);
    this.launch(() => this.bk.ropeF32(batch, x.rows / batch, x.cols, x.data, x.ld, cos.data, sin.data, out.data, out.ld));
    return out;
  }

  meanTokens(x: CpuMat, batch: number): CpuMat {
    const out = this.alloc(batch, x.cols);
    this.launch(() => this.bk.tokenMeanF32(batch, x.rows / batch, x.cols, x.data, x.ld, out.data));
    return out;
  }

  conv2dImages(images: Tensor<'F32'>, weight: Tensor<'F32'>, bias: Tensor<'F32'> | null, stride: number, pad: number): { out: CpuMat; grid: Grid } {
    const [B, C, H, W] = images.shape as [number, number, number, number];
    const [Cout, , K] = weight.shape as [number, number, number, number];
    const grid = { H: Math.floor((H + 2 * pad - K) / stride) + 1, W: Math.floor((W + 2 * pad - K) / stride) + 1 };
    const out = this.alloc(B * grid.H * grid.W, Cout);
    const input = this.inputOf(images);
    this.launch(() => this.bk.conv2dF32(B, C, H, W, true, input.data, Cout, K, stride, pad, weight.data, bias ? bias.data : null, out.data));
    return { out, grid };
  }

  conv2d(x: CpuMat, batch: number, g: Grid, weight: Tensor<'F32'>, bias: Tensor<'F32'> | null, stride: number, pad: number): { out: CpuMat; grid: Grid } {
    if (x.ld !== x.cols) throw new Error('conv2d: the input must be contiguous');
    const [Cout, Cin, K] = weight.shape as [number, number, number, number];
    const grid = { H: Math.floor((g.H + 2 * pad - K) / stride) + 1, W: Math.floor((g.W + 2 * pad - K) / stride) + 1 };
    const out = this.alloc(batch * grid.H * grid.W, Cout);
    this.launch(() => this.bk.conv2dF32(batch, Cin, g.H, g.W, false, x.data, Cout, K, stride, pad, weight.data, bias ? bias.data : null, out.data));
    return { out, grid };
  }

  depthwiseConv2d(x: CpuMat, batch: number, g: Grid, weight: Tensor<'F32'>, bias: Tensor<'F32'> | null, silu: boolean, _next: LinearSite | null): Act<CpuMat> & { fp: CpuMat } {
    const out = this.alloc(x.rows, x.cols);
    this.launch(() => this.bk.depthwiseConv2dF32(batch, g.H, g.W, x.cols, x.data, x.ld, weight.dim(-1), weight.data, bias ? bias.data : null, silu, out.data, out.ld));
    return { fp: out };
  }

  patchMerge(x: CpuMat, batch: number, g: Grid): { out: CpuMat; grid: Grid } {
    if (x.ld !== x.cols) throw new Error('patchMerge: the input must be contiguous');
    const grid = { H: Math.ceil(g.H / 2), W: Math.ceil(g.W / 2) };
    const out = this.alloc(batch * grid.H * grid.W, 4 * x.cols);
    this.launch(() => this.bk.patchMergeF32(batch, g.H, g.W, x.cols, x.data, out.data));
    return { out, grid };
  }
}

/** What a recording's input slot points at between forwards. */
const NO_IMAGES = new Float32Array(0);

/**
 * The dt_proj linears, whose output only a scan reads: Vim's (dt_proj, dt_proj_b), LocalVim's
 * (dt_proj_0..), VMamba's and LocalVMamba's (dt_projs.0..).
 */
const DT_PROJ = /(^|\.)(dt_proj(_b|_\d+)?|dt_projs\.\d+)$/;

function reciprocal(v: Float32Array): Float32Array {
  const out = new Float32Array(v.length);
  for (let i = 0; i < v.length; i++) out[i] = 1 / v[i]!;
  return out;
}

/** qweight · wscale per row: the weights the simulation multiplies by (σ already folded in). */
export function dequantizeWeights(q: LinearQuant, out: number, inF: number): Float32Array {
  const w = new Float32Array(out * inF);
  const lim = wQmax(q.wbits);
  for (let o = 0; o < out; o++) {
    const s = q.wscale[o]!;
    for (let j = 0; j < inF; j++) {
      const v = q.qweight[o * inF + j]!;
      w[o * inF + j] = Math.max(-lim, Math.min(lim, v)) * s;
    }
  }
  return w;
}
