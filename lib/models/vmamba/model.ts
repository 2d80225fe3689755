import type { LinearSite, TokenOrder } from '../ops.js';
import { scanOrder } from '../common/scan-order.js';
import { linearSite, negExp, rows, slice0 } from '../common/tensors.js';
import type { QuantizableSite } from '../localvim/model.js';
import type { QuantMetadata } from '../../quant/file.js';
import type { Tensor } from '../../tensor/tensor.js';
import { VMAMBA_DIRECTIONS, vmambaStageDims, type VMambaConfig, type VMambaStageDims } from './config.js';

/** The parameters of one cross-scan direction k of an SS2D block. */
export interface SsmDirection {
  /** x_proj_weight[k]: [dt_rank + 2·d_state, d_inner], rows [dt; B; C]. */
  xProj: LinearSite;
  /** dt_projs_weight[k]: [d_inner, dt_rank] (its bias is the scan's delta bias). */
  dtProj: LinearSite;
  /** −exp(A_logs[k·Di : (k+1)·Di]), [d_inner, d_state]. */
  A: Float32Array;
  D: Float32Array;
  dtBias: Float32Array;
}

export interface LayerNormParams {
  weight: Tensor<'F32'>;
  bias: Tensor<'F32'>;
}

export interface VMambaBlock {
  stage: number;
  index: number;
  /** `layers.i.blocks.j` */
  prefix: string;
  norm: LayerNormParams;
  inProj: LinearSite;
  conv: { weight: Tensor<'F32'>; bias: Tensor<'F32'> | null };
  dirs: SsmDirection[];
  outNorm: LayerNormParams;
  outProj: LinearSite;
  mlp: { norm: LayerNormParams; fc1: LinearSite; fc2: LinearSite } | null;
}

export interface VMambaStage {
  index: number;
  dims: VMambaStageDims;
  blocks: VMambaBlock[];
  /** Conv 3×3 stride 2 + LayerNorm to the next stage, or null for the last. */
  downsample: { conv: { weight: Tensor<'F32'>; bias: Tensor<'F32'> }; norm: LayerNormParams } | null;
}

/** The four cross-scan orders of an H×W map (cached per grid: stage sizes follow the input). */
export class OrderCache {
  private readonly cache = new Map<string, TokenOrder[]>();
  constructor(private readonly names: readonly string[][] | readonly string[], private readonly opts: Parameters<typeof scanOrder>[3] = {}) {}

  /** The orders of direction list `i` (or of the single list) over H×W. */
  orders(H: number, W: number, i = 0): TokenOrder[] {
    const key = `${i}:${H}x${W}`;
    let o = this.cache.get(key);
    if (!o) {
      const list = (typeof this.names[0] === 'string' ? this.names : this.names[i]) as readonly string[];
      o = list.map((n) => scanOrder(n, H, W, this.opts));
      this.cache.set(key, o);
    }
    return o;
  }
}

/**
 * A VMamba v2 (v05_noz) model: config, FP32 weights (checked against the config by the loader),
 * linear sites for every linear, and a cache of cross-scan orders per grid size.
 */
export class VMambaModel {
  readonly arch = 'vmamba' as const;
  readonly config: VMambaConfig;
  readonly tensors: ReadonlyMap<string, Tensor<'F32'>>;
  readonly stages: VMambaStage[];
  readonly head: LinearSite;
  readonly metadata: Readonly<Record<string, string>>;
  /** How the model was quantized, when it was loaded from (or calibrated into) a quantized file. */
  quantMetadata: QuantMetadata | null = null;
  readonly orders = new OrderCache(VMAMBA_DIRECTIONS);

  constructor(config: VMambaConfig, tensors: ReadonlyMap<string, Tensor<'F32'>>, metadata: Record<string, string> = {}) {
    this.config = config;
    this.tensors = tensors;
    this.metadata = metadata;
    const t = (name: string): Tensor<'F32'> => this.tensor(name);
    const ln = (p: string): LayerNormParams => ({ weight: t(p + '.weight'), bias: t(p + '.bias') });
    this.stages = config.depths.map((depth, i): VMambaStage => {
      const dims = vmambaStageDims(config, i);
      const E = dims.dInner;
      const blocks: VMambaBlock[] = [];
      for (let j = 0; j < depth; j++) {
        const prefix = `layers.${i}.blocks.${j}`;
        const p = prefix + '.op.';
        const aLogs = t(p + 'A_logs');
        const ds = t(p + 'Ds');
        const dirs = VMAMBA_DIRECTIONS.map((_, k): SsmDirection => ({
          xProj: linearSite(`${p}x_proj.${k}`, slice0(t(p + 'x_proj_weight'), k)),
          dtProj: linearSite(`${p}dt_projs.${k}`, slice0(t(p + 'dt_projs_weight'), k)),
          A: negExp(rows(aLogs, k * E, (k + 1) * E)),
          D: ds.data.subarray(k * E, (k + 1) * E),
          dtBias: slice0(t(p + 'dt_projs_bias'), k).data,
        }));
        blocks.push({
          stage: i, index: j, prefix,
          norm: ln(prefix + '.norm'),
          inProj: linearSite(p + 'in_proj', t(p + 'in_proj.weight')),
          conv: { weight: t(p + 'conv2d.weight'), bias: config.conv_bias ? t(p + 'conv2d.bias') : null },
          dirs,
          outNorm: ln(p + 'out_norm'),
          outProj: linearSite(p + 'out_proj', t(p + 'out_proj.weight')),
          mlp: dims.mlpHidden > 0 ? {
            norm: ln(prefix + '.norm2'),
            fc1: linearSite(prefix + '.mlp.fc1', t(prefix + '.mlp.fc1.weight'), t(prefix + '.mlp.fc1.bias')),
            fc2: linearSite(prefix + '.mlp.fc2', t(prefix + '.mlp.fc2.weight'), t(prefix + '.mlp.fc2.bias')),
          } : null,
        });
      }
      const last = i + 1 === config.depths.length;
      return {
        index: i, dims, blocks,
        downsample: last ? null : {
          conv: { weight: t(`layers.${i}.downsample.1.weight`), bias: t(`layers.${i}.downsample.1.bias`) },
          norm: ln(`layers.${i}.downsample.3`),
        },
      };
    });
    this.head = linearSite('classifier.head', t('classifier.head.weight'), t('classifier.head.bias'));
  }

  tensor(name: string): Tensor<'F32'> {
    const v = this.tensors.get(name);
    if (!v) throw new Error(`VMamba model: missing tensor ${name}`);
    return v;
  }

  /** Token grid of each stage for an input of H×W pixels (stem: two stride-2 convs; each downsample halves, rounding up). */
  stageGrids(H: number, W: number): { H: number; W: number }[] {
    let g = { H: Math.ceil(Math.ceil(H / 2) / 2), W: Math.ceil(Math.ceil(W / 2) / 2) };
    return this.stages.map((_, i) => {
      const cur = g;
      if (i + 1 < this.stages.length) g = { H: Math.ceil(g.H / 2), W: Math.ceil(g.W / 2) };
      return cur;
    });
  }

  /**
   * The linears PTQ4VM quantizes, block by block, for an input of H×W (default img_size): in_proj,
   * each direction's x_proj and dt_proj (per-token parameters in that direction's order), out_proj,
   * MLP fc1 and fc2. Token counts follow each stage's grid.
   */
  *quantizableSites(H = this.config.img_size, W = this.config.img_size): Generator<QuantizableSite> {
    const grids = this.stageGrids(H, W);
    for (const s of this.stages) {
      const L = grids[s.index]!.H * grids[s.index]!.W;
      for (const b of s.blocks) {
        yield { site: b.inProj, tokens: L };
        for (const d of b.dirs) {
          yield { site: d.xProj, tokens: L };
          yield { site: d.dtProj, tokens: L };
        }
        yield { site: b.outProj, tokens: L };
        if (b.mlp) {
          yield { site: b.mlp.fc1, tokens: L };
          yield { site: b.mlp.fc2, tokens: L };
        }
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
