import type { LinearSite } from '../models/ops.js';
import { vimMixer } from '../models/vim/graph.js';
import type { VimDirectionParams, VimLayer } from '../models/vim/model.js';
import { Tensor } from '../tensor/tensor.js';
import type { FloatArray } from './native.js';
import type { Tape } from './tape.js';
import { TapeExecutor, tapeMat, type LinearFakeQuant } from './tape-ops.js';
import type { Var } from './var.js';

export type { LinearFakeQuant } from './tape-ops.js';

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

/** A mixer given by its arrays rather than by a VimModel (gradient checks, benchmarks). */
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

const f32 = (a: FloatArray): Float32Array => (a instanceof Float32Array ? a : Float32Array.from(a));

/**
 * One Vim mixer on the tape, given by arrays: the model graph (lib/models/vim/graph.ts vimMixer)
 * run by a TapeExecutor. Linears named in `quant` are fake-quantized, the others run in floating
 * point. Frozen constants travel through the graph as float32 (the model's own precision).
 */
export function vimMixerOnTape(tape: Tape, input: Var, p: MixerParams, quant: Partial<Record<MixerLinearName, LinearFakeQuant>> = {}): Var {
  const sites = new Map<MixerLinearName, LinearSite>();
  const site = (name: MixerLinearName): LinearSite => {
    const w = p.weights[name];
    const [out, inF] = w.shape as [number, number];
    const s: LinearSite = { name, weight: new Tensor('F32', [out, inF], f32(w.data)), bias: null, inFeatures: inF, outFeatures: out, reversedTokens: name.endsWith('_b'), quant: null };
    sites.set(name, s);
    return s;
  };
  const E = p.dInner;
  const direction = (d: MixerDirection, s: '' | '_b'): VimDirectionParams => ({
    conv: { weight: new Tensor('F32', [E, d.convWeight.length / E], f32(d.convWeight)), bias: new Tensor('F32', [E], f32(d.convBias)) },
    xProj: site(`x_proj${s}`), dtProj: site(`dt_proj${s}`), A: f32(d.A), D: f32(d.D), dtBias: f32(d.dtBias),
  });
  const layer: VimLayer = {
    index: 0, norm: new Tensor('F32', [0]), inProj: site('in_proj'), outProj: site('out_proj'),
    fwd: direction(p.fwd, ''), bwd: direction(p.bwd, '_b'),
  };
  const quantBySite = new Map<LinearSite, LinearFakeQuant>();
  const weightBySite = new Map<LinearSite, Var>();
  for (const [name, s] of sites) {
    weightBySite.set(s, p.weights[name]);
    const q = quant[name];
    if (q) quantBySite.set(s, q);
  }
  const ops = new TapeExecutor(tape, { precision: input.precision, quant: quantBySite, weights: weightBySite });
  const shape = { dims: { dInner: p.dInner, dtRank: p.dtRank, seqLen: p.seqLen }, config: { d_state: p.dState } };
  return vimMixer(ops, shape, layer, { fp: tapeMat(input) }).v;
}
