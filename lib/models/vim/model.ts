import type { LinearSite } from '../ops.js';
import type { QuantMetadata } from '../../quant/file.js';
import type { Tensor } from '../../tensor/tensor.js';
import { vimDims, type VimConfig, type VimDims } from './config.js';

/** The six linears of a Vim mixer that PTQ4VM quantizes, in graph order. */
export const VIM_LINEARS = ['in_proj', 'x_proj', 'dt_proj', 'x_proj_b', 'dt_proj_b', 'out_proj'] as const;
export type VimLinearName = (typeof VIM_LINEARS)[number];

export interface VimDirectionParams {
  conv: { weight: Tensor<'F32'>; bias: Tensor<'F32'> };
  xProj: LinearSite;
  dtProj: LinearSite;
  /** −exp(A_log), [E, N], computed once at load. */
  A: Float32Array;
  D: Float32Array;
  dtBias: Float32Array;
}

export interface VimLayer {
  index: number;
  norm: Tensor<'F32'>;
  inProj: LinearSite;
  outProj: LinearSite;
  fwd: VimDirectionParams;
  bwd: VimDirectionParams;
}

function site(name: string, weight: Tensor<'F32'>, bias: Tensor<'F32'> | null, reversedTokens = false): LinearSite {
  return { name, weight, bias, outFeatures: weight.dim(0), inFeatures: weight.dim(1), reversedTokens, quant: null };
}

/** Conv1d weight [E, 1, K] viewed as [E, K]. */
function conv1dWeight(t: Tensor<'F32'>): Tensor<'F32'> {
  return t.reshape([t.dim(0), t.dim(2)]);
}

function negExp(t: Tensor<'F32'>): Float32Array {
  const out = new Float32Array(t.size);
  for (let i = 0; i < out.length; i++) out[i] = -Math.exp(t.data[i]!);
  return out;
}

/**
 * A Vim model: config, FP32 weights (already checked against the config by the loader), and
 * the linear sites whose `quant` a calibration fills in or a quantized file provides.
 */
export class VimModel {
  readonly config: VimConfig;
  readonly dims: VimDims;
  readonly tensors: ReadonlyMap<string, Tensor<'F32'>>;
  readonly layers: VimLayer[];
  readonly head: LinearSite;
  readonly metadata: Readonly<Record<string, string>>;
  /** How the model was quantized, when it was loaded from (or calibrated into) a quantized file. */
  quantMetadata: QuantMetadata | null = null;

  constructor(config: VimConfig, tensors: ReadonlyMap<string, Tensor<'F32'>>, metadata: Record<string, string> = {}) {
    this.config = config;
    this.dims = vimDims(config);
    this.tensors = tensors;
    this.metadata = metadata;
    const t = (name: string): Tensor<'F32'> => {
      const v = tensors.get(name);
      if (!v) throw new Error(`Vim model: missing tensor ${name}`);
      return v;
    };
    this.layers = [];
    for (let i = 0; i < config.depth; i++) {
      const p = `layers.${i}.mixer.`;
      const dir = (s: '' | '_b'): VimDirectionParams => ({
        conv: { weight: conv1dWeight(t(`${p}conv1d${s}.weight`)), bias: t(`${p}conv1d${s}.bias`) },
        xProj: site(`${p}x_proj${s}`, t(`${p}x_proj${s}.weight`), null, s === '_b'),
        dtProj: site(`${p}dt_proj${s}`, t(`${p}dt_proj${s}.weight`), null, s === '_b'),
        A: negExp(t(`${p}A${s}_log`)),
        D: t(`${p}D${s}`).data,
        dtBias: t(`${p}dt_proj${s}.bias`).data,
      });
      this.layers.push({
        index: i,
        norm: t(`layers.${i}.norm.weight`),
        inProj: site(`${p}in_proj`, t(`${p}in_proj.weight`), null),
        outProj: site(`${p}out_proj`, t(`${p}out_proj.weight`), null),
        fwd: dir(''),
        bwd: dir('_b'),
      });
    }
    this.head = site('head', t('head.weight'), t('head.bias'));
  }

  tensor(name: string): Tensor<'F32'> {
    const v = this.tensors.get(name);
    if (!v) throw new Error(`Vim model: missing tensor ${name}`);
    return v;
  }

  /** The quantizable linears of layer i by their PTQ4VM name. */
  linears(i: number): Record<VimLinearName, LinearSite> {
    const l = this.layers[i]!;
    return {
      in_proj: l.inProj, x_proj: l.fwd.xProj, dt_proj: l.fwd.dtProj,
      x_proj_b: l.bwd.xProj, dt_proj_b: l.bwd.dtProj, out_proj: l.outProj,
    };
  }

  /** Every quantizable linear site, layer by layer. */
  *allLinears(): Generator<LinearSite> {
    for (let i = 0; i < this.layers.length; i++) yield* Object.values(this.linears(i));
  }

  get isQuantized(): boolean {
    for (const s of this.allLinears()) if (s.quant) return true;
    return false;
  }

  get parameterCount(): number {
    let n = 0;
    for (const t of this.tensors.values()) n += t.size;
    return n;
  }
}
