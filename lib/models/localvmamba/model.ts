import type { LinearSite, TokenOrder } from '../ops.js';
import { linearSite, negExp, rows, slice0 } from '../common/tensors.js';
import type { ChannelGate, QuantizableSite } from '../localvim/model.js';
import { OrderCache, type LayerNormParams, type SsmDirection } from '../vmamba/model.js';
import type { QuantMetadata } from '../../quant/file.js';
import type { Tensor } from '../../tensor/tensor.js';
import { localVMambaStageDims, type LocalVMambaConfig, type LocalVMambaStageDims } from './config.js';

export interface LocalVMambaBlock {
  stage: number;
  index: number;
  /** Index among all blocks (the position of its direction list in the config). */
  global: number;
  /** `layers.i.blocks.j` */
  prefix: string;
  norm: LayerNormParams;
  /** [2·d_inner, dim]: x half, z half. */
  inProj: LinearSite;
  conv: { weight: Tensor<'F32'>; bias: Tensor<'F32'> };
  dirs: SsmDirection[];
  gate: ChannelGate;
  outNorm: LayerNormParams;
  outProj: LinearSite;
}

export interface LocalVMambaStage {
  index: number;
  dims: LocalVMambaStageDims;
  blocks: LocalVMambaBlock[];
  /** Swin patch merging (2×2 → LayerNorm(4C) → Linear 4C→2C), or null for the last stage. */
  downsample: { norm: LayerNormParams; reduction: LinearSite } | null;
}

/**
 * A LocalVMamba model: config, FP32 weights (checked against the config by the loader), linear
 * sites, and per-block scan orders cached per grid size (stage grids follow the input size).
 */
export class LocalVMambaModel {
  readonly arch = 'localvmamba' as const;
  readonly config: LocalVMambaConfig;
  readonly tensors: ReadonlyMap<string, Tensor<'F32'>>;
  readonly stages: LocalVMambaStage[];
  readonly head: LinearSite;
  readonly metadata: Readonly<Record<string, string>>;
  /** How the model was quantized, when it was loaded from (or calibrated into) a quantized file. */
  quantMetadata: QuantMetadata | null = null;
  private readonly orderCache: OrderCache;

  constructor(config: LocalVMambaConfig, tensors: ReadonlyMap<string, Tensor<'F32'>>, metadata: Record<string, string> = {}) {
    this.config = config;
    this.tensors = tensors;
    this.metadata = metadata;
    this.orderCache = new OrderCache(config.directions, { vReverse: config.v_reverse });
    const t = (name: string): Tensor<'F32'> => this.tensor(name);
    const ln = (p: string): LayerNormParams => ({ weight: t(p + '.weight'), bias: t(p + '.bias') });
    let global = 0;
    this.stages = config.depths.map((depth, i): LocalVMambaStage => {
      const dims = localVMambaStageDims(config, i);
      const E = dims.dInner;
      const blocks: LocalVMambaBlock[] = [];
      for (let j = 0; j < depth; j++, global++) {
        const prefix = `layers.${i}.blocks.${j}`;
        const p = prefix + '.op.';
        const aLogs = t(p + 'A_logs');
        const ds = t(p + 'Ds');
        const dirs = config.directions[global]!.map((_, k): SsmDirection => ({
          xProj: linearSite(`${p}x_proj.${k}`, slice0(t(p + 'x_proj_weight'), k)),
          dtProj: linearSite(`${p}dt_projs.${k}`, slice0(t(p + 'dt_projs_weight'), k)),
          A: negExp(rows(aLogs, k * E, (k + 1) * E)),
          D: ds.data.subarray(k * E, (k + 1) * E),
          dtBias: slice0(t(p + 'dt_projs_bias'), k).data,
        }));
        const a = p + 'multi_scan.attn.';
        blocks.push({
          stage: i, index: j, global, prefix,
          norm: ln(prefix + '.norm'),
          inProj: linearSite(p + 'in_proj', t(p + 'in_proj.weight')),
          conv: { weight: t(p + 'conv2d.weight'), bias: t(p + 'conv2d.bias') },
          dirs,
          gate: {
            norm: ln(a + 'norm'),
            reduce: linearSite(a + 'global_reduce', t(a + 'global_reduce.weight'), t(a + 'global_reduce.bias')),
            select: linearSite(a + 'channel_select', t(a + 'channel_select.weight'), t(a + 'channel_select.bias')),
          },
          outNorm: ln(p + 'out_norm'),
          outProj: linearSite(p + 'out_proj', t(p + 'out_proj.weight')),
        });
      }
      const last = i + 1 === config.depths.length;
      return {
        index: i, dims, blocks,
        downsample: last ? null : {
          norm: ln(`layers.${i}.downsample.norm`),
          reduction: linearSite(`layers.${i}.downsample.reduction`, t(`layers.${i}.downsample.reduction.weight`)),
        },
      };
    });
    this.head = linearSite('classifier.head', t('classifier.head.weight'), t('classifier.head.bias'));
  }

  tensor(name: string): Tensor<'F32'> {
    const v = this.tensors.get(name);
    if (!v) throw new Error(`LocalVMamba model: missing tensor ${name}`);
    return v;
  }

  /** The scan orders of a block over an H×W map. */
  orders(block: LocalVMambaBlock, H: number, W: number): TokenOrder[] {
    return this.orderCache.orders(H, W, block.global);
  }

  /** Token grid of each stage for an input of H×W pixels (stem: patch_size-stride conv; each merge halves, rounding up). */
  stageGrids(H: number, W: number): { H: number; W: number }[] {
    const P = this.config.patch_size;
    let g = { H: Math.floor(H / P), W: Math.floor(W / P) };
    return this.stages.map((_, i) => {
      const cur = g;
      if (i + 1 < this.stages.length) g = { H: Math.ceil(g.H / 2), W: Math.ceil(g.W / 2) };
      return cur;
    });
  }

  /**
   * The linears PTQ4VM quantizes, block by block, for an input of H×W (default img_size): in_proj,
   * each direction's x_proj and dt_proj (per-token parameters in that direction's own order, window
   * pads included), out_proj. Patch-merging reductions and the BiAttn linears stay FP.
   */
  *quantizableSites(H = this.config.img_size, W = this.config.img_size): Generator<QuantizableSite> {
    const grids = this.stageGrids(H, W);
    for (const s of this.stages) {
      const g = grids[s.index]!;
      for (const b of s.blocks) {
        const orders = this.orders(b, g.H, g.W);
        yield { site: b.inProj, tokens: g.H * g.W };
        for (let k = 0; k < b.dirs.length; k++) {
          yield { site: b.dirs[k]!.xProj, tokens: orders[k]!.steps };
          yield { site: b.dirs[k]!.dtProj, tokens: orders[k]!.steps };
        }
        yield { site: b.outProj, tokens: g.H * g.W };
      }
    }
  }

  /** Whether any quantizable linear carries a quantization (a calibrated model or a quantized file). */
  get isQuantized(): boolean {
    for (const { site } of this.quantizableSites()) if (site.quant) return true;
    return false;
  }

  get parameterCount(): number {
    let n = 0;
    for (const t of this.tensors.values()) n += t.size;
    return n;
  }
}
