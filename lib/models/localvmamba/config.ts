import { checkDirections, V_REVERSE_MODES, type VReverse } from '../common/scan-order.js';
import { checkTensorShapes, configObject, countWhile, epsField, intField, needShape, type ShapeMap } from '../common/tensors.js';
import { ConfigError } from '../vim/config.js';
import type { Shape } from '../../tensor/tensor.js';

/**
 * LocalVMamba hyper-parameters (LocalMamba's local_vmamba.py VSSM with fixed directions), as we
 * store them in `__metadata__.config`. Semantics: ../shared/fixtures/backbones/SPEC.md §4 and
 * docs/backbones.md.
 */
export interface LocalVMambaConfig {
  arch: 'localvmamba';
  /** Nominal input size (the model takes any size; the runtime checks images against this one). */
  img_size: number;
  patch_size: number;
  in_chans: number;
  num_classes: number;
  dims: number[];
  depths: number[];
  d_state: number;
  /** d_inner = ssm_ratio · dim. */
  ssm_ratio: number;
  dt_ranks: number[];
  /** Depthwise conv kernel of SS2D (with bias). */
  d_conv: number;
  eps: number;
  /** Per block (stage by stage), its scan directions. */
  directions: string[][];
  v_reverse: VReverse;
}

export interface LocalVMambaStageDims {
  dim: number;
  dInner: number;
  dtRank: number;
  xProjOut: number;
  attnHidden: number;
}

export function localVMambaStageDims(c: LocalVMambaConfig, i: number): LocalVMambaStageDims {
  const dim = c.dims[i]!;
  const dInner = Math.round(c.ssm_ratio * dim);
  return { dim, dInner, dtRank: c.dt_ranks[i]!, xProjOut: c.dt_ranks[i]! + 2 * c.d_state, attnHidden: Math.floor(dInner / 8) };
}

/** Directions of the released local_vssm_tiny (depths [2, 2, 9, 2]), block by block. */
export const LOCAL_VSSM_TINY_DIRECTIONS: readonly string[] = [
  'h h_flip w7 w7_flip', 'h_flip v_flip w2 w2_flip', 'h_flip v_flip w2_flip w7', 'h_flip v v_flip w2',
  'h h_flip v_flip w2_flip', 'h_flip v_flip w2 w2_flip', 'h w2_flip w7 w7_flip', 'h h_flip v v_flip',
  'h v_flip w7 w7_flip', 'h_flip v w2 w7_flip', 'v v_flip w2 w7_flip', 'h h_flip v_flip w2_flip',
  'v_flip w2_flip w7 w7_flip', 'h_flip v_flip w2_flip w7_flip', 'h_flip v w7 w7_flip',
];

/** Directions of the released local_vssm_small (depths [2, 2, 27, 2]), block by block. */
export const LOCAL_VSSM_SMALL_DIRECTIONS: readonly string[] = [
  'h v v_flip w7_flip', 'h h_flip v w7', 'h_flip v v_flip w7', 'h_flip v w2_flip w7', 'h_flip v w2_flip w7',
  'h_flip v_flip w2 w7_flip', 'h_flip v v_flip w7', 'h v v_flip w7', 'h v v_flip w7', 'h v v_flip w7_flip',
  'h h_flip v v_flip', 'h v v_flip w2', 'v v_flip w2_flip w7', 'h h_flip v w2', 'h_flip v v_flip w7_flip',
  'h h_flip v v_flip', 'h v v_flip w7_flip', 'h v v_flip w7_flip', 'h h_flip v_flip w7', 'h_flip v_flip w2_flip w7',
  'h_flip v v_flip w7_flip', 'v v_flip w7 w7_flip', 'h v v_flip w7_flip', 'h_flip v v_flip w2', 'h v v_flip w2_flip',
  'h h_flip v w7', 'h h_flip w7 w7_flip', 'h v_flip w2 w2_flip', 'h v_flip w2 w7', 'h v v_flip w7_flip',
  'h_flip v w2_flip w7', 'h_flip v_flip w7 w7_flip', 'h v w7 w7_flip',
];

const KNOWN_DIRECTIONS: Record<string, readonly string[]> = {
  '2,2,9,2': LOCAL_VSSM_TINY_DIRECTIONS,
  '2,2,27,2': LOCAL_VSSM_SMALL_DIRECTIONS,
};

/** Every tensor a LocalVMamba state dict holds, with its shape. */
export function localVMambaTensorShapes(c: LocalVMambaConfig): Map<string, Shape> {
  const m = new Map<string, Shape>();
  const C0 = c.dims[0]!;
  m.set('patch_embed.0.weight', [C0, c.in_chans, c.patch_size, c.patch_size]);
  m.set('patch_embed.0.bias', [C0]);
  m.set('patch_embed.2.weight', [C0]);
  m.set('patch_embed.2.bias', [C0]);
  let b = 0;
  c.depths.forEach((depth, i) => {
    const s = localVMambaStageDims(c, i);
    const C = s.dim;
    const E = s.dInner;
    for (let j = 0; j < depth; j++, b++) {
      const K = c.directions[b]!.length;
      const p = `layers.${i}.blocks.${j}.`;
      m.set(p + 'norm.weight', [C]);
      m.set(p + 'norm.bias', [C]);
      m.set(p + 'op.in_proj.weight', [2 * E, C]);
      m.set(p + 'op.conv2d.weight', [E, 1, c.d_conv, c.d_conv]);
      m.set(p + 'op.conv2d.bias', [E]);
      m.set(p + 'op.x_proj_weight', [K, s.xProjOut, E]);
      m.set(p + 'op.dt_projs_weight', [K, E, s.dtRank]);
      m.set(p + 'op.dt_projs_bias', [K, E]);
      m.set(p + 'op.A_logs', [K * E, c.d_state]);
      m.set(p + 'op.Ds', [K * E]);
      m.set(p + 'op.out_norm.weight', [E]);
      m.set(p + 'op.out_norm.bias', [E]);
      m.set(p + 'op.out_proj.weight', [C, E]);
      m.set(p + 'op.multi_scan.attn.norm.weight', [E]);
      m.set(p + 'op.multi_scan.attn.norm.bias', [E]);
      m.set(p + 'op.multi_scan.attn.global_reduce.weight', [s.attnHidden, E]);
      m.set(p + 'op.multi_scan.attn.global_reduce.bias', [s.attnHidden]);
      m.set(p + 'op.multi_scan.attn.channel_select.weight', [E, s.attnHidden]);
      m.set(p + 'op.multi_scan.attn.channel_select.bias', [E]);
    }
    if (i + 1 < c.depths.length) {
      m.set(`layers.${i}.downsample.norm.weight`, [4 * C]);
      m.set(`layers.${i}.downsample.norm.bias`, [4 * C]);
      m.set(`layers.${i}.downsample.reduction.weight`, [2 * C, 4 * C]);
    }
  });
  const last = c.dims[c.dims.length - 1]!;
  m.set('classifier.norm.weight', [last]);
  m.set('classifier.norm.bias', [last]);
  m.set('classifier.head.weight', [c.num_classes, last]);
  m.set('classifier.head.bias', [c.num_classes]);
  return m;
}

/** True when the tensor names are those of a LocalVMamba (SS2D blocks with a multi-scan BiAttn). */
export function looksLikeLocalVMamba(shapes: ShapeMap): boolean {
  return shapes.has('layers.0.blocks.0.op.multi_scan.attn.norm.weight');
}

export interface LocalVMambaHints {
  imgSize?: number;
  directions?: string[][];
  vReverse?: VReverse;
}

/**
 * The config of a LocalVMamba state dict: dims, depths, d_state, ssm_ratio, dt_rank and the number
 * of directions per block from the shapes, merged with `raw` (ours, or the official constructor
 * arguments the fixtures store: dims, depths, d_state, directions) and hints; directions of the
 * released tiny/small models are known. Every tensor is then checked against the config.
 */
export function localVMambaConfig(shapes: ShapeMap, where: string, raw: unknown | null, hints: LocalVMambaHints = {}): LocalVMambaConfig {
  const what = 'LocalVMamba';
  const o = raw === null || raw === undefined ? {} : configObject(raw, where);
  if (o.arch !== undefined && o.arch !== 'localvmamba' && !(typeof o.arch === 'string' && o.arch.startsWith('LocalVMamba'))) {
    throw new ConfigError(`${where}: config.arch ${JSON.stringify(o.arch)} is not a LocalVMamba`);
  }
  if ([...shapes.keys()].some((k) => k.endsWith('.multi_scan.weights'))) {
    throw new ConfigError(`${where}: a search-mode LocalVMamba (softmax-weighted directions) is not supported`);
  }
  const stem = needShape(shapes, 'patch_embed.0.weight', 4, where, what);
  const [C0, inChans, ph, pw] = stem as [number, number, number, number];
  if (ph !== pw) throw new ConfigError(`${where}: non-square patches (${ph}×${pw}) are not supported`);
  const stages = countWhile(shapes, (i) => `layers.${i}.blocks.0.norm.weight`);
  if (stages === 0) throw new ConfigError(`${where}: not a LocalVMamba state dict (no layers.0.blocks.0.norm.weight)`);
  const depths: number[] = [];
  const dims: number[] = [];
  const dtRanks: number[] = [];
  const counts: number[] = [];
  let dState = 0;
  let ratio = 0;
  let dConv = 0;
  for (let i = 0; i < stages; i++) {
    const depth = countWhile(shapes, (j) => `layers.${i}.blocks.${j}.norm.weight`);
    depths.push(depth);
    const p = `layers.${i}.blocks.0.`;
    const C = needShape(shapes, p + 'norm.weight', 1, where, what)[0]!;
    const E2 = needShape(shapes, p + 'op.in_proj.weight', 2, where, what)[0]!;
    dims.push(C);
    dtRanks.push(needShape(shapes, p + 'op.dt_projs_weight', 3, where, what)[2]!);
    for (let j = 0; j < depth; j++) counts.push(needShape(shapes, `layers.${i}.blocks.${j}.op.x_proj_weight`, 3, where, what)[0]!);
    if (i === 0) {
      dState = needShape(shapes, p + 'op.A_logs', 2, where, what)[1]!;
      ratio = E2 / 2 / C;
      dConv = needShape(shapes, p + 'op.conv2d.weight', 4, where, what)[2]!;
    }
  }
  if (dims[0] !== C0) throw new ConfigError(`${where}: the stem makes ${C0} channels, stage 0 has ${dims[0]}`);
  if (dConv % 2 !== 1) throw new ConfigError(`${where}: the SS2D depthwise conv has an even kernel (${dConv}); only odd ("same") kernels are supported`);
  const head = needShape(shapes, 'classifier.head.weight', 2, where, what);
  if (o.dims !== undefined && JSON.stringify(o.dims) !== JSON.stringify(dims)) throw new ConfigError(`${where}: config.dims ${JSON.stringify(o.dims)} disagrees with the tensors (${JSON.stringify(dims)})`);
  if (o.depths !== undefined && JSON.stringify(o.depths) !== JSON.stringify(depths)) throw new ConfigError(`${where}: config.depths ${JSON.stringify(o.depths)} disagrees with the tensors (${JSON.stringify(depths)})`);
  if (o.d_state !== undefined && o.d_state !== dState) throw new ConfigError(`${where}: config.d_state ${JSON.stringify(o.d_state)} disagrees with the tensors (${dState})`);

  const blocks = depths.reduce((a, b) => a + b, 0);
  let list: unknown = hints.directions ?? o.directions;
  const known = KNOWN_DIRECTIONS[depths.join(',')];
  if (list === undefined && known) list = known.map((s) => s.split(' '));
  if (list === undefined) throw new ConfigError(`${where}: the scan directions of this LocalVMamba (depths ${JSON.stringify(depths)}) are not recorded; give them (directions option)`);
  if (!Array.isArray(list) || list.length !== blocks) throw new ConfigError(`${where}: config.directions must list the directions of each of the ${blocks} blocks`);
  const directions = list.map((l, b) => {
    try {
      return checkDirections(l, `${where}: config.directions[${b}]`);
    } catch (e) {
      throw new ConfigError((e as Error).message);
    }
  });
  directions.forEach((d, b) => {
    if (d.length !== counts[b]) throw new ConfigError(`${where}: block ${b} has ${counts[b]} scan directions in its tensors, the config lists ${d.length}`);
  });
  const vReverse = hints.vReverse ?? (o.v_reverse === undefined ? 'inverse' : o.v_reverse);
  if (!V_REVERSE_MODES.includes(vReverse as VReverse)) throw new ConfigError(`${where}: config.v_reverse must be one of ${V_REVERSE_MODES.join(', ')}`);
  const cfg: LocalVMambaConfig = {
    arch: 'localvmamba', img_size: hints.imgSize ?? intField(o, 'img_size', where, 4, 8192, 224), patch_size: ph,
    in_chans: inChans, num_classes: head[0]!, dims, depths, d_state: dState, ssm_ratio: ratio, dt_ranks: dtRanks,
    d_conv: dConv, eps: epsField(o, where), directions, v_reverse: vReverse as VReverse,
  };
  checkTensorShapes(localVMambaTensorShapes(cfg), shapes, where, what);
  return cfg;
}
