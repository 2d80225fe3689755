import type { FloatArray } from './native.js';
import type { ScanDirection, Tape } from './tape.js';
import type { Var } from './var.js';

/** The six linears of a Vim mixer, as lib/models/vim/model.ts names them. */
export type MixerLinearName = 'in_proj' | 'x_proj' | 'dt_proj' | 'x_proj_b' | 'dt_proj_b' | 'out_proj';

/** Frozen constants of one scan direction (arrays of the tape's precision). */
export interface MixerDirection {
  /** conv1d weight [E, K] and bias [E]. */
  convWeight: FloatArray;
  convBias: FloatArray;
  /** [E, N], already −exp(A_log). */
  A: FloatArray;
  D: FloatArray;
  /** dt_proj's bias, added inside the scan before softplus. */
  dtBias: FloatArray;
}

export interface MixerParams {
  /** Tokens per image L (rows of the input are B·L). */
  seqLen: number;
  /** d_inner E, dt_rank R, d_state N. */
  dInner: number;
  dtRank: number;
  dState: number;
  /** Weights [out, in] of the six linears (usually constants; Var.param to train them). */
  weights: Readonly<Record<MixerLinearName, Var>>;
  fwd: MixerDirection;
  bwd: MixerDirection;
}

/**
 * Fake quantization of one linear: activations x/σ quantized per token (asymmetric), weights
 * W·σ per output row (symmetric). Make smooth/wscale/ascale Var.param to learn them (JLSS) or
 * Var.constant to keep them fixed.
 */
export interface LinearFakeQuant {
  /** σ [in], or null for no smoothing. */
  smooth: Var | null;
  /** Weight step sizes [out]. */
  wscale: Var;
  wqmax: number;
  /** Activation step sizes [period] and zero points [period]. */
  ascale: Var;
  azero: Int32Array;
  aqmax: number;
  period: number;
  /** Parameters indexed by period − 1 − row % period: the backward branch's reversed token order. */
  reversePeriod?: boolean;
}

/**
 * One Vim mixer (bimamba v2, "div2" combine) on normalized input rows [B·L, D] → [B·L, D], the
 * graph of lib/models/vim/graph.ts on the tape: linears whose name is in `quant` are
 * fake-quantized, the others run in floating point.
 */
export function vimMixerOnTape(tape: Tape, input: Var, p: MixerParams, quant: Partial<Record<MixerLinearName, LinearFakeQuant>> = {}): Var {
  const { dInner: E, dtRank: R, dState: N, seqLen: L } = p;
  // Fake-quantized (or FP) activation and weight of a linear.
  const operands = (name: MixerLinearName, x: Var): [Var, Var] => {
    const q = quant[name];
    const w = p.weights[name];
    if (!q) return [x, w];
    const a = tape.fakeQuantAct(x, q.smooth, q.ascale, { zero: q.azero, qmax: q.aqmax, period: q.period, reversePeriod: q.reversePeriod ?? false });
    return [a, tape.fakeQuantWeight(w, q.smooth, q.wscale, { qmax: q.wqmax })];
  };
  const linear = (name: MixerLinearName, x: Var): Var => tape.matmulNT(...operands(name, x));
  // in_proj as two products over its row halves (weights are quantized per output row), so x
  // and z come out as separate matrices without copying columns of a [B·L, 2E] output.
  const [hin, win] = operands('in_proj', input);
  const x = tape.matmulNT(hin, tape.sliceRows(win, 0, E));
  const z = tape.matmulNT(hin, tape.sliceRows(win, E, 2 * E));
  const direction = (d: MixerDirection, reverse: boolean): ScanDirection => {
    const s = reverse ? '_b' : '';
    const c = tape.conv1dSilu(x, L, d.convWeight, d.convBias, reverse);
    const xd = linear(`x_proj${s}` as MixerLinearName, c);
    const delta = linear(`dt_proj${s}` as MixerLinearName, tape.sliceCols(xd, 0, R));
    return {
      u: c, delta, B: tape.sliceCols(xd, R, R + N), C: tape.sliceCols(xd, R + N, R + 2 * N),
      A: d.A, D: d.D, deltaBias: d.dtBias, softplus: true, reverse,
    };
  };
  const y = tape.bidirectionalScan(direction(p.fwd, false), direction(p.bwd, true), z, L);
  return linear('out_proj', y);
}
