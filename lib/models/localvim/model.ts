import type { LinearSite, TokenOrder } from '../ops.js';
import { scanOrder } from '../common/scan-order.js';
import { linearSite, negExp } from '../common/tensors.js';
import type { QuantMetadata } from '../../quant/file.js';
import type { Tensor } from '../../tensor/tensor.js';
import { localVimDims, type LocalVimConfig, type LocalVimDims } from './config.js';

/** One scan direction of a MultiMamba mixer: its token order and its own parameters. */
export interface LocalVimDirection {
  order: TokenOrder;
  conv: { weight: Tensor<'F32'>; bias: Tensor<'F32'> };
  /** x_proj_k: [dt_rank + 2·d_state, d_inner], rows [dt; B; C]. */
  xProj: LinearSite;
  /** dt_proj_k without its bias (the bias is the scan's delta bias). */
  dtProj: LinearSite;
  /** −exp(A_log_k), [d_inner, d_state]. */
  A: Float32Array;
  D: Float32Array;
  dtBias: Float32Array;
}

/** BiAttn (LocalMamba's channel gate): LayerNorm → token mean → Linear → GELU → Linear → sigmoid. */
export interface ChannelGate {
  norm: { weight: Tensor<'F32'>; bias: Tensor<'F32'> };
  reduce: LinearSite;
  select: LinearSite;
}

export interface LocalVimLayer {
  index: number;
  norm: Tensor<'F32'>;
  inProj: LinearSite;
  outProj: LinearSite;
  dirs: LocalVimDirection[];
  gate: ChannelGate;
}

/** A linear PTQ4VM quantizes, with the number of token rows per image it sees (its per-token parameter count). */
export interface QuantizableSite {
  site: LinearSite;
  tokens: number;
}

/**
 * A LocalVim model: config, FP32 weights (checked against the config by the loader), and its
 * linear sites. The scan orders are built once here from the config (the grid is fixed by
 * img_size).
 */
export class LocalVimModel {
  readonly arch = 'localvim' as const;
  readonly config: LocalVimConfig;
  readonly dims: LocalVimDims;
  readonly tensors: ReadonlyMap<string, Tensor<'F32'>>;
  readonly layers: LocalVimLayer[];
  readonly head: LinearSite;
  readonly metadata: Readonly<Record<string, string>>;
  /** How the model was quantized, when it was loaded from (or calibrated into) a quantized file. */
  quantMetadata: QuantMetadata | null = null;

  constructor(config: LocalVimConfig, tensors: ReadonlyMap<string, Tensor<'F32'>>, metadata: Record<string, string> = {}) {
    this.config = config;
    this.dims = localVimDims(config);
    this.tensors = tensors;
    this.metadata = metadata;
    const t = (name: string): Tensor<'F32'> => this.tensor(name);
    const g = this.dims.grid;
    const orders = new Map<string, TokenOrder>();
    const orderOf = (name: string): TokenOrder => {
      let o = orders.get(name);
      if (!o) orders.set(name, (o = scanOrder(name, g, g, { vReverse: config.v_reverse, clsPos: this.dims.clsPos })));
      return o;
    };
    this.layers = [];
    for (let i = 0; i < config.depth; i++) {
      const p = `layers.${i}.mixer.`;
      const dirs = config.directions[i]!.map((name, k): LocalVimDirection => {
        const conv = t(`${p}conv1d_${k}.weight`);
        return {
          order: orderOf(name),
          conv: { weight: conv.reshape([conv.dim(0), conv.dim(2)]), bias: t(`${p}conv1d_${k}.bias`) },
          xProj: linearSite(`${p}x_proj_${k}`, t(`${p}x_proj_${k}.weight`)),
          dtProj: linearSite(`${p}dt_proj_${k}`, t(`${p}dt_proj_${k}.weight`)),
          A: negExp(t(`${p}A_log_${k}`).data),
          D: t(`${p}D_${k}`).data,
          dtBias: t(`${p}dt_proj_${k}.bias`).data,
        };
      });
      this.layers.push({
        index: i,
        norm: t(`layers.${i}.norm.weight`),
        inProj: linearSite(`${p}in_proj`, t(`${p}in_proj.weight`)),
        outProj: linearSite(`${p}out_proj`, t(`${p}out_proj.weight`)),
        dirs,
        gate: {
          norm: { weight: t(`${p}attn.norm.weight`), bias: t(`${p}attn.norm.bias`) },
          reduce: linearSite(`${p}attn.global_reduce`, t(`${p}attn.global_reduce.weight`), t(`${p}attn.global_reduce.bias`)),
          select: linearSite(`${p}attn.channel_select`, t(`${p}attn.channel_select.weight`), t(`${p}attn.channel_select.bias`)),
        },
      });
    }
    this.head = linearSite('head', t('head.weight'), t('head.bias'));
  }

  tensor(name: string): Tensor<'F32'> {
    const v = this.tensors.get(name);
    if (!v) throw new Error(`LocalVim model: missing tensor ${name}`);
    return v;
  }

  /**
   * The linears PTQ4VM quantizes, layer by layer: in_proj, each direction's x_proj and dt_proj
   * (per-token parameters in that direction's own scan order, pads and class token included),
   * out_proj. The BiAttn linears see one row per image and stay FP.
   */
  *quantizableSites(): Generator<QuantizableSite> {
    const L = this.dims.seqLen;
    for (const l of this.layers) {
      yield { site: l.inProj, tokens: L };
      for (const d of l.dirs) {
        yield { site: d.xProj, tokens: d.order.steps };
        yield { site: d.dtProj, tokens: d.order.steps };
      }
      yield { site: l.outProj, tokens: L };
    }
  }

  /** Learned parameters (the RoPE tables are buffers, not counted — as the official count). */
  /** Whether any quantizable linear carries a quantization (a calibrated model or a quantized file). */
  get isQuantized(): boolean {
    for (const { site } of this.quantizableSites()) if (site.quant) return true;
    return false;
  }

  get parameterCount(): number {
    let n = 0;
    for (const [k, t] of this.tensors) if (!k.startsWith('rope.')) n += t.size;
    return n;
  }
}
