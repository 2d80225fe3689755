import { backboneTrainKernels } from '../backend/backbone-kernels.js';
import { trainKernels, type FloatArray } from './native.js';
import type { BufferPool } from './pool.js';
import { allocFloats, type Precision, Var } from './var.js';

/** Frozen constants of a selective scan (semantics of native/include/ptq4vm/scan.h). */
export interface ScanConstants {
  /** [E, N], already −exp(A_log). */
  A: FloatArray;
  D?: FloatArray | null;
  /** Added to delta before softplus (dt_proj's bias). */
  deltaBias?: FloatArray | null;
  /** Default true. */
  softplus?: boolean;
  /** Default false: time runs backwards (the Vim backward branch in original token order). */
  reverse?: boolean;
}

export interface ScanOptions extends ScanConstants {
  /** Tokens per sequence L; the operands hold B·L rows. */
  seqLen: number;
}

/** One direction of a bidirectional scan: operands u, delta [B·L, E], B, C [B·L, N] and its constants. */
export interface ScanDirection extends ScanConstants {
  u: Var;
  delta: Var;
  B: Var;
  C: Var;
}

/** Activation quantizer constants: asymmetric, parameters per token position (see train.h). */
export interface ActQuantOptions {
  /** [period] integer zero points in [0, qmax]. */
  zero: Int32Array;
  /** 2^bits − 1. */
  qmax: number;
  /** Parameters of row r are index r % period: L for per-token static, 1 per-tensor. */
  period: number;
  /** Index period − 1 − r % period: for the Vim backward branch, whose token order is reversed. */
  reversePeriod?: boolean;
}

export interface WeightQuantOptions {
  /** 2^(bits−1) − 1. */
  qmax: number;
}

/**
 * Reductions the INT8 product runs for (gemm_int8.h keeps int32 accumulators up to 32768); below
 * 16 the float GEMM is faster (dt_proj's K = dt_rank).
 */
const MIN_INT8_K = 16;
const MAX_INT8_K = 32768;

/** Clamp of the row norms in cosineLoss (torch.nn.functional.cosine_similarity's eps). */
export const COSINE_EPS = 1e-8;

interface Node {
  out: Var;
  backward: (grad: FloatArray) => void;
}

/** The integer side of a fake-quantized activation: what trainGemmInt8 multiplies. */
interface ActLevels {
  levels: Uint8Array;
  scale: Float32Array;
  zero: Int32Array;
  period: number;
  reversePeriod: boolean;
}

/** The integer side of a fake-quantized weight (rows of it after sliceRows). */
interface WeightLevels {
  levels: Int8Array;
  scale: Float32Array;
}

function fail(op: string, message: string): never {
  throw new RangeError(`autograd.${op}: ${message}`);
}

function matrix(op: string, name: string, v: Var): [number, number] {
  if (v.shape.length !== 2) fail(op, `'${name}' must be a matrix, got shape [${v.shape.join(', ')}]`);
  return [v.shape[0]!, v.shape[1]!];
}

function vector(op: string, name: string, v: Var, n: number): void {
  if (v.shape.length !== 1 || v.shape[0] !== n) fail(op, `'${name}' must have shape [${n}], got [${v.shape.join(', ')}]`);
}

function frozen(op: string, name: string, a: FloatArray | null | undefined, n: number, precision: Precision): FloatArray | null {
  if (a === null || a === undefined) return null;
  const ok = precision === 'f64' ? a instanceof Float64Array : a instanceof Float32Array;
  if (!ok) throw new TypeError(`autograd.${op}: '${name}' must be a ${precision === 'f64' ? 'Float64Array' : 'Float32Array'} like the operands`);
  if (a.length !== n) fail(op, `'${name}' has ${a.length} values, needs ${n}`);
  return a;
}

function samePrecision(op: string, vars: readonly (Var | null)[]): Precision {
  let p: Precision | null = null;
  for (const v of vars) {
    if (!v) continue;
    if (p && v.precision !== p) throw new TypeError(`autograd.${op}: operands mix float32 and float64`);
    p = v.precision;
  }
  return p ?? 'f32';
}

export interface TapeOptions {
  /**
   * Where op outputs and intermediate gradients come from and go back to. With a pool, call
   * `release()` after each step (once the outputs are no longer read) so the next tape reuses
   * the arrays.
   */
  pool?: BufferPool;
}

/**
 * A reverse-mode tape: every op computes its output now (natively for the heavy ones) and, when
 * an input requires a gradient, records how to push the output's gradient back to its inputs.
 * `backward(loss)` replays the records in reverse order. Build a new Tape per step; parameters
 * (Var.param) live across tapes and accumulate gradients until zeroGrad().
 */
export class Tape {
  private readonly nodes: Node[] = [];
  private readonly pool: BufferPool | null;
  /** Output arrays of this tape's ops (returned to the pool by release()). */
  private readonly outputs: FloatArray[] = [];
  /** Values this tape computed: their gradients are intermediate, the others' belong to leaves. */
  private readonly produced = new Set<Var>();
  /** Integer levels of fake-quantized float32 values, so matmulNT can run the INT8 product. */
  private readonly actLevels = new Map<Var, ActLevels>();
  private readonly weightLevels = new Map<Var, WeightLevels>();

  constructor(options: TapeOptions = {}) {
    this.pool = options.pool ?? null;
  }

  /** Number of recorded ops (for tests and diagnostics). */
  get length(): number {
    return this.nodes.length;
  }

  /** An output array (every op writes all of it). */
  private alloc(p: Precision, n: number): FloatArray {
    const a = this.pool ? this.pool.take(p, n, false) : p === 'f64' ? new Float64Array(n) : new Float32Array(n);
    this.outputs.push(a);
    return a;
  }

  /** v's gradient array, zero-filled on first use: pooled for intermediates, plain for leaves. */
  private grad(v: Var): FloatArray {
    if (!v.grad) v.grad = this.pool && this.produced.has(v) ? this.pool.take(v.precision, v.size, true) : v.gradBuffer();
    return v.grad;
  }

  /**
   * Gradient arrays for an op that writes every element of each (null where a Var needs none),
   * and whether the op must add into them. Intermediates without a gradient yet get arrays to
   * overwrite (pooled ones are not zeroed: a step then skips both the zero-fill and the read of
   * zeros); when any of them already holds a gradient or belongs to a leaf, the fresh ones are
   * zeroed and the op adds into all.
   */
  private gradOutputs(vars: readonly (Var | null)[]): { grads: (FloatArray | null)[]; accumulate: boolean } {
    const need = vars.map((v) => (v && v.requiresGrad ? v : null));
    const fresh = need.map((v) => v !== null && !v.grad && this.produced.has(v));
    const allFresh = need.every((v, i) => v === null || fresh[i]);
    const grads = need.map((v, i) => {
      if (!v) return null;
      if (fresh[i]) v.grad = this.pool ? this.pool.take(v.precision, v.size, !allFresh) : allocFloats(v.precision, v.size);
      return this.grad(v);
    });
    return { grads, accumulate: !allFresh };
  }

  private record(data: FloatArray, shape: readonly number[], inputs: readonly (Var | null)[], backward: Node['backward']): Var {
    const requiresGrad = inputs.some((v) => v !== null && v.requiresGrad);
    const out = new Var(data, shape, requiresGrad);
    this.produced.add(out);
    if (requiresGrad) this.nodes.push({ out, backward });
    return out;
  }

  /**
   * Seeds ∂loss/∂loss = 1 and runs every recorded backward, last op first. Gradients of leaves
   * are added to their `grad`; intermediate gradients are released as soon as they are used.
   */
  backward(loss: Var): void {
    if (loss.size !== 1) fail('backward', `the loss must have one value, got ${loss.size}`);
    if (!loss.requiresGrad) fail('backward', 'the loss does not depend on any parameter');
    this.grad(loss)[0] = 1;
    for (let i = this.nodes.length - 1; i >= 0; i--) {
      const { out, backward } = this.nodes[i]!;
      if (!out.grad) continue;  // does not reach the loss
      backward(out.grad);
      if (this.pool) this.pool.give(out.grad);
      out.grad = null;
    }
    this.nodes.length = 0;
  }

  /**
   * Hands every array this tape allocated back to its pool: the values it computed must not be
   * read afterwards (copy the loss out first). Without a pool this only drops references.
   */
  release(): void {
    if (this.pool) {
      for (const a of this.outputs) this.pool.give(a);
      for (const l of this.actLevels.values()) this.pool.give(l.levels);
    }
    this.actLevels.clear();
    this.weightLevels.clear();
    this.outputs.length = 0;
    this.produced.clear();
    this.nodes.length = 0;
  }

  // ---- linear algebra ----

  /**
   * x [M, K] · wᵀ (w [N, K], a linear's weight) → [M, N]; gradients to both. When x and w are
   * fake-quantized float32 values (fakeQuantAct, fakeQuantWeight), the product is the INT8 one
   * of their levels (the inference kernels'); the gradients are the float ones either way.
   */
  matmulNT(x: Var, w: Var): Var {
    const p = samePrecision('matmulNT', [x, w]);
    const [M, K] = matrix('matmulNT', 'x', x);
    const [N, K2] = matrix('matmulNT', 'w', w);
    if (K !== K2) fail('matmulNT', `x has ${K} columns but w has ${K2}`);
    const k = trainKernels();
    const out = this.alloc(p, M * N);
    const al = this.actLevels.get(x), wl = this.weightLevels.get(w);
    if (al && wl && K <= MAX_INT8_K && K >= MIN_INT8_K) {
      k.trainGemmInt8(M, N, K, al.levels, wl.levels, al.period, al.reversePeriod, al.scale, al.zero, wl.scale, out as Float32Array, false);
    } else {
      k.trainGemm(false, true, M, N, K, x.data, K, w.data, K, false, out, N);
    }
    return this.record(out, [M, N], [x, w], (g) => {
      if (x.requiresGrad) {
        const { grads: [gx], accumulate } = this.gradOutputs([x]);
        k.trainGemm(false, false, M, K, N, g, N, w.data, K, accumulate, gx!, K);  // g · w
      }
      if (w.requiresGrad) {
        const { grads: [gw], accumulate } = this.gradOutputs([w]);
        k.trainGemm(true, false, N, K, M, g, N, x.data, K, accumulate, gw!, K);  // gᵀ · x
      }
    });
  }

  // ---- shapes ----

  /** Columns [start, end) of x [rows, cols] (a copy). */
  sliceCols(x: Var, start: number, end: number): Var {
    const [rows, cols] = matrix('sliceCols', 'x', x);
    if (!(Number.isInteger(start) && Number.isInteger(end) && 0 <= start && start <= end && end <= cols)) {
      fail('sliceCols', `columns [${start}, ${end}) are not inside [0, ${cols})`);
    }
    const w = end - start;
    const k = trainKernels();
    const out = this.alloc(x.precision, rows * w);
    k.trainCopyCols(rows, w, x.data, cols, start, out, w, 0, false);
    return this.record(out, [rows, w], [x], (g) => k.trainCopyCols(rows, w, g, w, 0, this.grad(x), cols, start, true));
  }

  /** Rows [start, end) of x [rows, cols] (a copy): splits a linear's weight by output rows. */
  sliceRows(x: Var, start: number, end: number): Var {
    const [rows, cols] = matrix('sliceRows', 'x', x);
    if (!(Number.isInteger(start) && Number.isInteger(end) && 0 <= start && start <= end && end <= rows)) {
      fail('sliceRows', `rows [${start}, ${end}) are not inside [0, ${rows})`);
    }
    const out = x.data.slice(start * cols, end * cols);
    const wl = this.weightLevels.get(x);
    const slice = this.record(out, [end - start, cols], [x], (g) => {
      const gx = this.grad(x);
      for (let i = 0, o = start * cols; i < g.length; i++) gx[o + i] += g[i]!;
    });
    if (wl) this.weightLevels.set(slice, { levels: wl.levels.subarray(start * cols, end * cols), scale: wl.scale.subarray(start, end) });
    return slice;
  }

  /** Column-wise concatenation of matrices with the same number of rows. */
  concatCols(parts: readonly Var[]): Var {
    if (parts.length === 0) fail('concatCols', 'nothing to concatenate');
    const p = samePrecision('concatCols', parts);
    const rows = matrix('concatCols', 'parts[0]', parts[0]!)[0];
    const widths = parts.map((v, i) => {
      const [r, c] = matrix('concatCols', `parts[${i}]`, v);
      if (r !== rows) fail('concatCols', `parts[${i}] has ${r} rows, parts[0] has ${rows}`);
      return c;
    });
    const cols = widths.reduce((a, b) => a + b, 0);
    const k = trainKernels();
    const out = this.alloc(p, rows * cols);
    let offset = 0;
    parts.forEach((v, i) => {
      k.trainCopyCols(rows, widths[i]!, v.data, widths[i]!, 0, out, cols, offset, false);
      offset += widths[i]!;
    });
    return this.record(out, [rows, cols], parts, (g) => {
      let off = 0;
      parts.forEach((v, i) => {
        const w = widths[i]!;
        if (v.requiresGrad) {
          const { grads: [gv], accumulate } = this.gradOutputs([v]);
          k.trainCopyCols(rows, w, g, cols, off, gv!, w, 0, accumulate);
        }
        off += w;
      });
    });
  }

  // ---- elementwise ----

  add(a: Var, b: Var): Var {
    const p = samePrecision('add', [a, b]);
    if (a.size !== b.size || a.shape.join() !== b.shape.join()) fail('add', `shapes [${a.shape}] and [${b.shape}] differ`);
    const out = this.alloc(p, a.size);
    for (let i = 0; i < out.length; i++) out[i] = a.data[i]! + b.data[i]!;
    return this.record(out, a.shape, [a, b], (g) => {
      for (const v of [a, b]) {
        if (!v.requiresGrad) continue;
        const gv = this.grad(v);
        for (let i = 0; i < gv.length; i++) gv[i] += g[i]!;
      }
    });
  }

  /** a · s for a constant s. */
  scale(a: Var, s: number): Var {
    if (!Number.isFinite(s)) fail('scale', `the factor must be finite, got ${s}`);
    const out = this.alloc(a.precision, a.size);
    for (let i = 0; i < out.length; i++) out[i] = a.data[i]! * s;
    return this.record(out, a.shape, [a], (g) => {
      const ga = this.grad(a);
      for (let i = 0; i < ga.length; i++) ga[i] += g[i]! * s;
    });
  }

  /** Elementwise product. */
  mul(a: Var, b: Var): Var {
    const p = samePrecision('mul', [a, b]);
    if (a.size !== b.size || a.shape.join() !== b.shape.join()) fail('mul', `shapes [${a.shape}] and [${b.shape}] differ`);
    const out = this.alloc(p, a.size);
    for (let i = 0; i < out.length; i++) out[i] = a.data[i]! * b.data[i]!;
    return this.record(out, a.shape, [a, b], (g) => {
      if (a.requiresGrad) {
        const ga = this.grad(a);
        for (let i = 0; i < ga.length; i++) ga[i] += g[i]! * b.data[i]!;
      }
      if (b.requiresGrad) {
        const gb = this.grad(b);
        for (let i = 0; i < gb.length; i++) gb[i] += g[i]! * a.data[i]!;
      }
    });
  }

  /** x · sigmoid(x). */
  silu(x: Var): Var {
    const out = this.alloc(x.precision, x.size);
    for (let i = 0; i < out.length; i++) out[i] = x.data[i]! / (1 + Math.exp(-x.data[i]!));
    return this.record(out, x.shape, [x], (g) => {
      const gx = this.grad(x);
      for (let i = 0; i < gx.length; i++) {
        const v = x.data[i]!;
        const s = 1 / (1 + Math.exp(-v));
        gx[i] += g[i]! * s * (1 + v * (1 - s));
      }
    });
  }

  // ---- Mamba ----

  /**
   * silu(causal depthwise conv1d(x)) over sequences of seqLen rows (x: [B·L, E]; weight [E, K],
   * bias [E] or null, both frozen); reverse runs the conv backwards in time. Gradient to x.
   */
  conv1dSilu(x: Var, seqLen: number, weight: FloatArray, bias: FloatArray | null, reverse: boolean): Var {
    const [rows, E] = matrix('conv1dSilu', 'x', x);
    if (!(Number.isInteger(seqLen) && seqLen > 0 && rows % seqLen === 0)) fail('conv1dSilu', `${rows} rows are not a whole number of sequences of ${seqLen}`);
    if (E === 0 || weight.length % E !== 0) fail('conv1dSilu', `weight has ${weight.length} values, not a multiple of E = ${E}`);
    const K = weight.length / E;
    frozen('conv1dSilu', 'weight', weight, E * K, x.precision);
    frozen('conv1dSilu', 'bias', bias, E, x.precision);
    const B = rows / seqLen;
    const k = trainKernels();
    const out = this.alloc(x.precision, rows * E);
    k.trainConv1d(B, seqLen, E, K, x.data, weight, bias, reverse, true, out);
    return this.record(out, [rows, E], [x], (g) => {
      const { grads: [gx], accumulate } = this.gradOutputs([x]);
      k.trainConv1dBackward(B, seqLen, E, K, x.data, weight, bias, reverse, true, g, gx!, accumulate);
    });
  }

  /**
   * Selective scan with the SiLU(z) gate (z may be null): u, delta, z [B·L, E]; B, C [B·L, N].
   * Gradients to u, delta (through softplus and deltaBias), B, C and z; A, D, deltaBias frozen.
   */
  selectiveScan(u: Var, delta: Var, B: Var, C: Var, z: Var | null, o: ScanOptions): Var {
    return this.scans('selectiveScan', [{ ...o, u, delta, B, C }], z, o.seqLen, 1);
  }

  /**
   * The Vim combine of both directions sharing the gate z: (scan_fwd + scan_bwd) / 2, computed
   * in one output buffer (no separate add and scale).
   */
  bidirectionalScan(fwd: ScanDirection, bwd: ScanDirection, z: Var | null, seqLen: number): Var {
    return this.scans('bidirectionalScan', [fwd, bwd], z, seqLen, 0.5);
  }

  /** outScale · Σ_d scan_d, every direction with the same z. */
  private scans(op: string, dirs: readonly ScanDirection[], z: Var | null, L: number, outScale: number): Var {
    const d0 = dirs[0]!;
    const p = samePrecision(op, [z, ...dirs.flatMap((d) => [d.u, d.delta, d.B, d.C])]);
    const [rows, E] = matrix(op, 'u', d0.u);
    const [rowsB, N] = matrix(op, 'B', d0.B);
    if (rowsB !== rows) fail(op, `'B' has ${rowsB} rows, u has ${rows}`);
    const check = (name: string, v: Var, cols: number) => {
      const [r, c] = matrix(op, name, v);
      if (r !== rows || c !== cols) fail(op, `'${name}' must be [${rows}, ${cols}], got [${r}, ${c}]`);
    };
    if (z) check('z', z, E);
    if (!(Number.isInteger(L) && L > 0 && rows % L === 0)) fail(op, `${rows} rows are not a whole number of sequences of ${L}`);
    const consts = dirs.map((d) => {
      check('u', d.u, E);
      check('delta', d.delta, E);
      check('B', d.B, N);
      check('C', d.C, N);
      return {
        A: frozen(op, 'A', d.A, E * N, p)!, D: frozen(op, 'D', d.D, E, p), bias: frozen(op, 'deltaBias', d.deltaBias, E, p),
        softplus: d.softplus ?? true, reverse: d.reverse ?? false,
      };
    });
    const nb = rows / L;
    const k = trainKernels();
    const y = this.alloc(p, rows * E);
    const [c0, c1] = consts;
    // Two directions forward and reversed in time: the native bidirectional kernels apply.
    const pair = c1 !== undefined && !c0!.reverse && c1.reverse && c0!.softplus === c1.softplus;
    if (pair && z && outScale === 0.5) {
      // The Vim combine: both directions and the gate in one pass (the inference kernel).
      const [d0, d1] = dirs as [ScanDirection, ScanDirection];
      k.trainScanBidir(nb, L, E, N, d0.u.data, d0.delta.data, c0!.A, d0.B.data, d0.C.data, c0!.D, c0!.bias,
        d1.u.data, d1.delta.data, c1!.A, d1.B.data, d1.C.data, c1!.D, c1!.bias, z.data, c0!.softplus, y);
    } else {
      dirs.forEach((d, i) => {
        const c = consts[i]!;
        k.trainScan(nb, L, E, N, d.u.data, d.delta.data, c.A, d.B.data, d.C.data, c.D, z ? z.data : null, c.bias, c.softplus,
          c.reverse, outScale, i > 0, y);
      });
    }
    const inputs = [z, ...dirs.flatMap((d) => [d.u, d.delta, d.B, d.C])];
    return this.record(y, [rows, E], inputs, (g) => {
      const perDir = dirs.map((d) => [d.u, d.delta, d.B, d.C]);
      const outs = [...perDir.flat(), z];
      const distinct = outs.every((v, i) => !v || !v.requiresGrad || outs.indexOf(v) === i);
      if (pair && distinct) {
        // Both directions in one pass: the gate's terms once, dz written once.
        const [d0, d1] = dirs as [ScanDirection, ScanDirection];
        const { grads: gr, accumulate } = this.gradOutputs(outs);
        k.trainScanBidirBackward(nb, L, E, N, d0.u.data, d0.delta.data, c0!.A, d0.B.data, d0.C.data, c0!.D, c0!.bias,
          d1.u.data, d1.delta.data, c1!.A, d1.B.data, d1.C.data, c1!.D, c1!.bias, z ? z.data : null, c0!.softplus, outScale, g,
          gr[0], gr[1], gr[2], gr[3], gr[4], gr[5], gr[6], gr[7], gr[8], accumulate);
        return;
      }
      dirs.forEach((d, i) => {
        const c = consts[i]!;
        const { grads: gr, accumulate } = this.gradOutputs([d.u, d.delta, d.B, d.C, z]);
        k.trainScanBackward(nb, L, E, N, d.u.data, d.delta.data, c.A, d.B.data, d.C.data, c.D, z ? z.data : null, c.bias,
          c.softplus, c.reverse, outScale, g, gr[0], gr[1], gr[2], gr[3], gr[4], accumulate);
      });
    });
  }

  // ---- ops of the other backbones' JLSS units (LocalVim, VMamba, LocalVMamba; train_backbone.h) ----

  /** x [rows, cols] + bias on every row (bias frozen: a biased linear's output). Gradient to x. */
  addRowBias(x: Var, bias: FloatArray): Var {
    const [rows, cols] = matrix('addRowBias', 'x', x);
    frozen('addRowBias', 'bias', bias, cols, x.precision);
    const out = this.alloc(x.precision, rows * cols);
    for (let r = 0; r < rows; r++) for (let j = 0, o = r * cols; j < cols; j++) out[o + j] = x.data[o + j]! + bias[j]!;
    return this.record(out, [rows, cols], [x], (g) => {
      const gx = this.grad(x);
      for (let i = 0; i < gx.length; i++) gx[i] += g[i]!;
    });
  }

  /** LayerNorm over the columns of each row (weight / bias frozen, null → 1 / 0). Gradient to x. */
  layerNorm(x: Var, weight: FloatArray | null, bias: FloatArray | null, eps: number): Var {
    const [rows, cols] = matrix('layerNorm', 'x', x);
    const w = frozen('layerNorm', 'weight', weight, cols, x.precision), b = frozen('layerNorm', 'bias', bias, cols, x.precision);
    const k = backboneTrainKernels();
    const out = this.alloc(x.precision, rows * cols);
    k.trainLayerNorm(rows, cols, x.data, w, b, eps, out);
    return this.record(out, [rows, cols], [x], (g) => {
      const { grads: [gx], accumulate } = this.gradOutputs([x]);
      k.trainLayerNormBackward(rows, cols, x.data, w, eps, g, gx!, accumulate);
    });
  }

  /**
   * [batch, cols]: per image, the mean over its rows of LayerNorm(row); with `select` ([rows per
   * image]), only the rows whose entry is ≥ 0 (a scan order's scatter: pads are left out). Gradient to x.
   */
  layerNormTokenMean(x: Var, batch: number, select: Int32Array | null, weight: FloatArray | null, bias: FloatArray | null, eps: number): Var {
    const [rows, C] = matrix('layerNormTokenMean', 'x', x);
    if (!(Number.isInteger(batch) && batch > 0 && rows % batch === 0)) fail('layerNormTokenMean', `${rows} rows are not ${batch} images`);
    const L = rows / batch;
    if (select && select.length !== L) fail('layerNormTokenMean', `'select' has ${select.length} entries, images have ${L} rows`);
    const w = frozen('layerNormTokenMean', 'weight', weight, C, x.precision);
    const b = frozen('layerNormTokenMean', 'bias', bias, C, x.precision);
    const k = backboneTrainKernels();
    const out = this.alloc(x.precision, batch * C);
    k.trainLayerNormTokenMean(batch, L, C, x.data, select, w, b, eps, out);
    return this.record(out, [batch, C], [x], (g) => {
      const { grads: [gx], accumulate } = this.gradOutputs([x]);
      k.trainLayerNormTokenMeanBackward(batch, L, C, x.data, select, w, eps, g, gx!, accumulate);
    });
  }

  /** GELU, the exact erf form. */
  gelu(x: Var): Var {
    const k = backboneTrainKernels();
    const out = this.alloc(x.precision, x.size);
    k.trainGelu(x.size, x.data, out);
    return this.record(out, x.shape, [x], (g) => {
      const { grads: [gx], accumulate } = this.gradOutputs([x]);
      k.trainGeluBackward(x.size, x.data, g, gx!, accumulate);
    });
  }

  sigmoid(x: Var): Var {
    const k = backboneTrainKernels();
    const out = this.alloc(x.precision, x.size);
    k.trainSigmoid(x.size, x.data, out);
    return this.record(out, x.shape, [x], (g) => {
      const { grads: [gx], accumulate } = this.gradOutputs([x]);
      k.trainSigmoidBackward(x.size, out, g, gx!, accumulate);
    });
  }

  /**
   * Depthwise conv2d of a token-major map x [batch·H·W, C] (odd K, stride 1, same zero padding;
   * weight [C·K·K] and bias [C] or null frozen), optionally followed by SiLU. Gradient to x.
   */
  depthwiseConv2d(x: Var, batch: number, H: number, W: number, weight: FloatArray, bias: FloatArray | null, silu: boolean): Var {
    const [rows, C] = matrix('depthwiseConv2d', 'x', x);
    if (!(Number.isInteger(H) && Number.isInteger(W) && H > 0 && W > 0 && rows === batch * H * W)) {
      fail('depthwiseConv2d', `${rows} rows are not ${batch} images of ${H}×${W}`);
    }
    const K = Math.round(Math.sqrt(weight.length / C));
    frozen('depthwiseConv2d', 'weight', weight, C * K * K, x.precision);
    const b = frozen('depthwiseConv2d', 'bias', bias, C, x.precision);
    const k = backboneTrainKernels();
    const out = this.alloc(x.precision, rows * C);
    k.trainDepthwiseConv2d(batch, H, W, C, K, x.data, weight, b, silu, out);
    return this.record(out, [rows, C], [x], (g) => {
      const { grads: [gx], accumulate } = this.gradOutputs([x]);
      k.trainDepthwiseConv2dBackward(batch, H, W, C, K, x.data, weight, b, silu, g, gx!, accumulate);
    });
  }

  /** [batch·steps, C]: row t of each image is x's row gather[t] of that image, or zeros where it is −1. Gradient to x. */
  gatherTokens(x: Var, batch: number, gather: Int32Array): Var {
    const [rows, C] = matrix('gatherTokens', 'x', x);
    if (!(Number.isInteger(batch) && batch > 0 && rows % batch === 0)) fail('gatherTokens', `${rows} rows are not ${batch} images`);
    const per = rows / batch, steps = gather.length;
    const k = backboneTrainKernels();
    const out = this.alloc(x.precision, batch * steps * C);
    k.trainGatherTokens(batch, per, steps, C, x.data, gather, out);
    return this.record(out, [batch * steps, C], [x], (g) => {
      const { grads: [gx], accumulate } = this.gradOutputs([x]);
      k.trainGatherTokensBackward(batch, per, steps, C, gather, g, gx!, accumulate);
    });
  }

  /**
   * [batch·rows, C]: `base` (zeros when null) with, for every step t whose scatter[t] ≥ 0, row
   * scatter[t] of each image set to (accumulate ? that row : 0) + y[b, t]·gate[b] (gate [batch, C]
   * or null). Gradients to y, gate and base.
   */
  scatterTokens(y: Var, batch: number, rows: number, scatter: Int32Array, base: Var | null, accumulate: boolean, gate: Var | null): Var {
    const p = samePrecision('scatterTokens', [y, base, gate]);
    const [yr, C] = matrix('scatterTokens', 'y', y);
    const steps = scatter.length;
    if (yr !== batch * steps) fail('scatterTokens', `y has ${yr} rows, ${batch} images of ${steps} steps need ${batch * steps}`);
    if (base) {
      const [br, bc] = matrix('scatterTokens', 'base', base);
      if (br !== batch * rows || bc !== C) fail('scatterTokens', `base must be [${batch * rows}, ${C}], got [${br}, ${bc}]`);
    }
    if (gate) {
      const [gr, gc] = matrix('scatterTokens', 'gate', gate);
      if (gr !== batch || gc !== C) fail('scatterTokens', `gate must be [${batch}, ${C}], got [${gr}, ${gc}]`);
    }
    const k = backboneTrainKernels();
    const n = batch * rows * C;
    const out = this.alloc(p, n);
    if (base) out.set(base.data);
    else out.fill(0);
    k.trainScatterTokens(batch, steps, rows, C, y.data, scatter, gate ? gate.data : null, accumulate, out);
    return this.record(out, [batch * rows, C], [y, base, gate], (g) => {
      if (y.requiresGrad) {
        const { grads: [gy], accumulate: acc } = this.gradOutputs([y]);
        k.trainScatterTokensBackward(batch, steps, rows, C, y.data, scatter, gate ? gate.data : null, g, gy!, acc, null);
      }
      if (gate?.requiresGrad) {
        k.trainScatterTokensBackward(batch, steps, rows, C, y.data, scatter, gate.data, g, null, false, this.grad(gate));
      }
      if (base?.requiresGrad) {
        // What base held survives on the rows no step overwrites (on every row when accumulating).
        const gb = this.grad(base);
        const kept = new Uint8Array(rows).fill(1);
        if (!accumulate) for (const s of scatter) if (s >= 0) kept[s] = 0;
        for (let b = 0; b < batch; b++) {
          for (let r = 0; r < rows; r++) {
            if (!kept[r]) continue;
            for (let j = 0, o = (b * rows + r) * C; j < C; j++) gb[o + j] += g[o + j]!;
          }
        }
      }
    });
  }

  // ---- quantizers (straight-through, LSQ-style step gradients; formulas in train.h) ----

  /**
   * Fake-quantized activations in the smoothed domain: (clamp(round(x/σ/s_p) + z_p, 0, qmax) − z_p)·s_p
   * with p = row % period; x [rows, cols], σ [cols] or null, s [period]. Gradients to x, σ, s.
   */
  fakeQuantAct(x: Var, smooth: Var | null, scale: Var, o: ActQuantOptions): Var {
    const p = samePrecision('fakeQuantAct', [x, smooth, scale]);
    const [rows, cols] = matrix('fakeQuantAct', 'x', x);
    if (smooth) vector('fakeQuantAct', 'smooth', smooth, cols);
    vector('fakeQuantAct', 'scale', scale, o.period);
    if (o.zero.length !== o.period) fail('fakeQuantAct', `'zero' has ${o.zero.length} values, period is ${o.period}`);
    const rev = o.reversePeriod ?? false;
    const k = trainKernels();
    const out = this.alloc(p, rows * cols);
    const sm = smooth ? smooth.data : null;
    // float32 values of at most 8 bits also keep their levels, for the INT8 product (matmulNT).
    const levels = p === 'f32' && o.qmax <= 255 ? (this.pool ? this.pool.takeBytes(rows * cols) : new Uint8Array(rows * cols)) : null;
    k.trainFakeQuantAct(rows, cols, o.period, rev, x.data, sm, scale.data, o.zero, o.qmax, out, levels);
    const q = this.record(out, [rows, cols], [x, smooth, scale], (g) => {
      const { grads: [gx], accumulate } = this.gradOutputs([x]);
      k.trainFakeQuantActBackward(rows, cols, o.period, rev, x.data, sm, scale.data, o.zero, o.qmax, g, gx!,
        smooth?.requiresGrad ? this.grad(smooth) : null, scale.requiresGrad ? this.grad(scale) : null, accumulate);
    });
    if (levels) this.actLevels.set(q, { levels, scale: scale.data as Float32Array, zero: o.zero, period: o.period, reversePeriod: rev });
    return q;
  }

  /**
   * Fake-quantized weights W·σ, symmetric per output row: clamp(round(W·σ/s_o), −qmax, qmax)·s_o;
   * w [out, in], σ [in] or null, s [out]. Gradients to w, σ, s.
   */
  fakeQuantWeight(w: Var, smooth: Var | null, scale: Var, o: WeightQuantOptions): Var {
    const p = samePrecision('fakeQuantWeight', [w, smooth, scale]);
    const [rows, cols] = matrix('fakeQuantWeight', 'w', w);
    if (smooth) vector('fakeQuantWeight', 'smooth', smooth, cols);
    vector('fakeQuantWeight', 'scale', scale, rows);
    const k = trainKernels();
    const out = this.alloc(p, rows * cols);
    const sm = smooth ? smooth.data : null;
    k.trainFakeQuantWeight(rows, cols, w.data, sm, scale.data, o.qmax, out);
    let levels: Int8Array | null = null;
    if (p === 'f32' && o.qmax <= 127) {
      levels = new Int8Array(rows * cols);
      k.trainWeightLevels(rows, cols, w.data as Float32Array, sm as Float32Array | null, scale.data as Float32Array, o.qmax, levels);
    }
    const q = this.record(out, [rows, cols], [w, smooth, scale], (g) => {
      k.trainFakeQuantWeightBackward(rows, cols, w.data, sm, scale.data, o.qmax, g,
        w.requiresGrad ? this.grad(w) : null, smooth?.requiresGrad ? this.grad(smooth) : null,
        scale.requiresGrad ? this.grad(scale) : null);
    });
    if (levels) this.weightLevels.set(q, { levels, scale: scale.data as Float32Array });
    return q;
  }

  // ---- reductions and loss ----

  /** Σ of all values → [1]. */
  sum(x: Var): Var {
    let acc = 0;
    for (let i = 0; i < x.size; i++) acc += x.data[i]!;
    const out = this.alloc(x.precision, 1);
    out[0] = acc;
    return this.record(out, [1], [x], (g) => {
      const gx = this.grad(x);
      for (let i = 0; i < gx.length; i++) gx[i] += g[0]!;
    });
  }

  /**
   * mean over rows of 1 − cos(out_r, target_r) → [1]; each row norm is clamped at COSINE_EPS
   * (a clamped norm is a constant for the gradient). The target gets no gradient.
   */
  cosineLoss(out: Var, target: Var): Var {
    const p = samePrecision('cosineLoss', [out, target]);
    const [rows, cols] = matrix('cosineLoss', 'out', out);
    const [tr, tc] = matrix('cosineLoss', 'target', target);
    if (tr !== rows || tc !== cols) fail('cosineLoss', `target is [${tr}, ${tc}], out is [${rows}, ${cols}]`);
    if (rows === 0) fail('cosineLoss', 'no rows');
    const k = trainKernels();
    const stats = new Float64Array(3 * rows);
    const loss = this.alloc(p, 1);
    loss[0] = k.trainCosineLoss(rows, cols, out.data, target.data, COSINE_EPS, stats);
    return this.record(loss, [1], [out], (g) => {
      const { grads: [go], accumulate } = this.gradOutputs([out]);
      k.trainCosineLossBackward(rows, cols, out.data, target.data, COSINE_EPS, stats, g[0]!, go!, accumulate);
    });
  }
}
