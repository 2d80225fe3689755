// Helpers of the autograd tests: seeded random data, central finite differences, and a tiny
// random Vim mixer (weights, constants, fake-quant parameters) in either precision.
import { Tape, Var, toPrecision, type FloatArray, type Precision } from '../../lib/autograd/index.js';
import { vimMixerOnTape, type LinearFakeQuant, type MixerLinearName, type MixerParams } from '../../lib/autograd/vim-mixer.js';

/** Deterministic uniform numbers in [lo, hi) (mulberry32). */
export function rng(seed: number): (lo?: number, hi?: number) => number {
  let s = seed >>> 0;
  return (lo = -1, hi = 1) => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    const u = ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    return lo + (hi - lo) * u;
  };
}
export type Rng = ReturnType<typeof rng>;

export function randomArray(precision: Precision, n: number, r: Rng, lo = -1, hi = 1): FloatArray {
  const a = precision === 'f64' ? new Float64Array(n) : new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = r(lo, hi);
  return a;
}

/**
 * max |central difference − analytic| over every value of every Var in `params`, relative to the
 * largest analytic magnitude (at least 1e-3). `loss` rebuilds the graph from the current values.
 * The step is relative (hRel·max(|p|, 1e-2)) because step sizes are small numbers with large
 * curvature.
 */
export function fdRelError(params: readonly Var[], loss: () => number, hRel = 1e-6): number {
  let worst = 0, scale = 1e-3;
  for (const p of params) {
    if (!p.grad) throw new Error('parameter has no gradient');
    for (const g of p.grad) scale = Math.max(scale, Math.abs(g));
  }
  for (const p of params) {
    for (let i = 0; i < p.size; i++) {
      const keep = p.data[i]!;
      const h = hRel * Math.max(Math.abs(keep), 1e-2);
      p.data[i] = keep + h;
      const lp = loss();
      p.data[i] = keep - h;
      const lm = loss();
      p.data[i] = keep;
      worst = Math.max(worst, Math.abs((lp - lm) / (2 * h) - p.grad![i]!));
    }
  }
  return worst / scale;
}

/** max |a − b| / max |b|. */
export function maxRelDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch ${a.length} vs ${b.length}`);
  let num = 0, den = 1e-30;
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i]! - b[i]!));
    den = Math.max(den, Math.abs(b[i]!));
  }
  return num / den;
}

export interface TinyMixerDims {
  batch: number;
  seqLen: number;
  D: number;
  E: number;
  N: number;
  R: number;
  K: number;
}

export const LINEARS: readonly MixerLinearName[] = ['in_proj', 'x_proj', 'dt_proj', 'x_proj_b', 'dt_proj_b', 'out_proj'];

/** The [out, in] shape of each linear. */
export function linearShapes(d: TinyMixerDims): Record<MixerLinearName, [number, number]> {
  const xo = d.R + 2 * d.N;
  return {
    in_proj: [2 * d.E, d.D], x_proj: [xo, d.E], x_proj_b: [xo, d.E], dt_proj: [d.E, d.R], dt_proj_b: [d.E, d.R], out_proj: [d.D, d.E],
  };
}

/** Random mixer weights (as values, so either precision can be built from them). */
export interface TinyMixer {
  dims: TinyMixerDims;
  weights: Record<MixerLinearName, number[]>;
  dirs: { convWeight: number[]; convBias: number[]; A: number[]; D: number[]; dtBias: number[] }[];
}

export function randomMixer(dims: TinyMixerDims, seed: number): TinyMixer {
  const r = rng(seed);
  const arr = (n: number, lo: number, hi: number) => Array.from({ length: n }, () => r(lo, hi));
  const shapes = linearShapes(dims);
  const weights = {} as Record<MixerLinearName, number[]>;
  for (const name of LINEARS) {
    const [o, i] = shapes[name];
    const bound = 1 / Math.sqrt(i);
    weights[name] = arr(o * i, -bound, bound);
  }
  const { E, N, K } = dims;
  const dirs = [0, 1].map(() => ({
    convWeight: arr(E * K, -0.5, 0.5), convBias: arr(E, -0.2, 0.2), A: arr(E * N, -2, -0.2), D: arr(E, 0.5, 1.5),
    dtBias: arr(E, -3, -1),
  }));
  return { dims, weights, dirs };
}

/** MixerParams of the precision; `trainWeights` makes the six weights parameters. */
export function mixerParams(m: TinyMixer, precision: Precision, trainWeights = false): MixerParams {
  const shapes = linearShapes(m.dims);
  const weights = {} as Record<MixerLinearName, Var>;
  for (const name of LINEARS) {
    const data = toPrecision(m.weights[name], precision);
    weights[name] = trainWeights ? Var.param(data, shapes[name]) : Var.constant(data, shapes[name]);
  }
  const dir = (i: number) => {
    const d = m.dirs[i]!;
    return {
      convWeight: toPrecision(d.convWeight, precision), convBias: toPrecision(d.convBias, precision), A: toPrecision(d.A, precision),
      D: toPrecision(d.D, precision), dtBias: toPrecision(d.dtBias, precision),
    };
  };
  return { seqLen: m.dims.seqLen, dInner: m.dims.E, dtRank: m.dims.R, dState: m.dims.N, weights, fwd: dir(0), bwd: dir(1) };
}

/** Fake-quant parameters for every linear (values; `quantVars` makes Vars of them). */
export interface TinyQuant {
  smooth: Record<MixerLinearName, number[]>;
  wscale: Record<MixerLinearName, number[]>;
  ascale: Record<MixerLinearName, number[]>;
  azero: Record<MixerLinearName, Int32Array>;
  wqmax: number;
  aqmax: number;
}

/**
 * Plausible parameters: σ around 1, weight steps that clip the largest |W·σ| of a row a little,
 * activation ranges of about ±2 per token (some clipping on both sides).
 */
export function randomQuant(m: TinyMixer, wbits: number, abits: number, seed: number): TinyQuant {
  const r = rng(seed);
  const shapes = linearShapes(m.dims);
  const wqmax = 2 ** (wbits - 1) - 1, aqmax = 2 ** abits - 1;
  const q: TinyQuant = { smooth: {} as never, wscale: {} as never, ascale: {} as never, azero: {} as never, wqmax, aqmax };
  for (const name of LINEARS) {
    const [o, i] = shapes[name];
    const smooth = Array.from({ length: i }, () => r(0.6, 1.6));
    const w = m.weights[name];
    q.smooth[name] = smooth;
    q.wscale[name] = Array.from({ length: o }, (_, row) => {
      let mx = 0;
      for (let k = 0; k < i; k++) mx = Math.max(mx, Math.abs(w[row * i + k]! * smooth[k]!));
      return (0.9 * mx) / wqmax;
    });
    q.ascale[name] = Array.from({ length: m.dims.seqLen }, () => r(2.5, 4.5) / aqmax);
    q.azero[name] = Int32Array.from({ length: m.dims.seqLen }, () => Math.round(r(0.3, 0.7) * aqmax));
  }
  return q;
}

/**
 * Sets each linear's activation steps and zero points from the per-token range of its FP input
 * x/σ (shrunk by 5 %, so the extremes clip), as a calibration would; `input` is [B·L, D].
 */
export function calibrateActivations(m: TinyMixer, q: TinyQuant, input: ArrayLike<number>): void {
  const L = m.dims.seqLen;
  const ranges = new Map<MixerLinearName, { lo: number[]; hi: number[] }>();
  const order: MixerLinearName[] = ['in_proj', 'x_proj', 'dt_proj', 'x_proj_b', 'dt_proj_b', 'out_proj'];
  let call = 0;
  // Quantizers that pass their input through unchanged (an FP forward) and record x/σ ranges.
  class RangeTape extends Tape {
    override fakeQuantAct(x: Var, smooth: Var | null, _scale: Var, o: { period: number; reversePeriod?: boolean }): Var {
      const name = order[call++]!;
      const lo = new Array<number>(o.period).fill(Infinity), hi = new Array<number>(o.period).fill(-Infinity);
      const [rows, cols] = x.shape as [number, number];
      for (let r = 0; r < rows; r++) {
        const t = r % o.period, p = o.reversePeriod ? o.period - 1 - t : t;
        for (let j = 0; j < cols; j++) {
          const a = x.data[r * cols + j]! / (smooth ? smooth.data[j]! : 1);
          lo[p] = Math.min(lo[p]!, a);
          hi[p] = Math.max(hi[p]!, a);
        }
      }
      ranges.set(name, { lo, hi });
      return x;
    }
    override fakeQuantWeight(w: Var): Var {
      return w;
    }
  }
  const tape = new RangeTape();
  const p = mixerParams(m, 'f64');
  vimMixerOnTape(tape, Var.constant(Float64Array.from(input), [input.length / m.dims.D, m.dims.D]), p, quantVars(q, 'f64', L, false));
  for (const name of LINEARS) {
    const { lo, hi } = ranges.get(name)!;
    q.ascale[name] = lo.map((l, i) => Math.max(0.95 * (Math.max(hi[i]!, 0) - Math.min(l, 0)), 1e-6) / q.aqmax);
    q.azero[name] = Int32Array.from(lo, (l, i) => Math.min(q.aqmax, Math.max(0, Math.round(-Math.min(l, 0) / q.ascale[name][i]!))));
  }
}

export function quantVars(q: TinyQuant, precision: Precision, seqLen: number, train: boolean): Record<MixerLinearName, LinearFakeQuant> {
  const mk = (v: number[]) => (train ? Var.param(toPrecision(v, precision)) : Var.constant(toPrecision(v, precision)));
  const out = {} as Record<MixerLinearName, LinearFakeQuant>;
  for (const name of LINEARS) {
    out[name] = {
      smooth: mk(q.smooth[name]), wscale: mk(q.wscale[name]), wqmax: q.wqmax, ascale: mk(q.ascale[name]), azero: q.azero[name],
      aqmax: q.aqmax, period: seqLen, reversePeriod: name.endsWith('_b'),
    };
  }
  return out;
}

/** Every trainable Var of the quantization, in a fixed order. */
export function quantParams(qv: Record<MixerLinearName, LinearFakeQuant>): Var[] {
  return LINEARS.flatMap((n) => [qv[n].smooth!, qv[n].wscale, qv[n].ascale]);
}

export { Tape };
