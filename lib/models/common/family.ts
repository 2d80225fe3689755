/**
 * Which model family a state dict holds (Vim, LocalVim, VMamba v2, LocalVMamba), and the config
 * of the three non-Vim families from tensor shapes + metadata (`__metadata__.config`, ours or the
 * official constructor arguments) + user hints. Shared by the loader and `ptq4vm convert`.
 */
import { ConfigError } from '../vim/config.js';
import { localVimConfig, looksLikeLocalVim, type LocalVimConfig } from '../localvim/config.js';
import { localVMambaConfig, looksLikeLocalVMamba, type LocalVMambaConfig } from '../localvmamba/config.js';
import { looksLikeVMamba, vmambaConfig, vmambaKeyRenames, type VMambaConfig } from '../vmamba/config.js';
import type { VReverse } from './scan-order.js';
import { siteWeightSource } from './sites.js';
import type { ShapeMap } from './tensors.js';
import { Tensor, type Shape } from '../../tensor/tensor.js';

export type ModelFamily = 'vim' | 'localvim' | 'vmamba' | 'localvmamba';
export type BackboneFamily = Exclude<ModelFamily, 'vim'>;
export type BackboneConfig = LocalVimConfig | VMambaConfig | LocalVMambaConfig;

export const FAMILY_NAMES: Readonly<Record<ModelFamily, string>> = {
  vim: 'Vim', localvim: 'LocalVim', vmamba: 'VMamba v2', localvmamba: 'LocalVMamba',
};

/** Hints for state dicts that do not record everything (official checkpoints carry no config). */
export interface BackboneHints {
  /** Input image size (LocalVim: must match pos_embed; VMamba/LocalVMamba: the nominal size, default 224). */
  imgSize?: number;
  /** Scan directions per layer (LocalVim) or per block (LocalVMamba), when not in the metadata or a released model. */
  directions?: string[][];
  /** LocalMamba vertical-scan reverse: 'inverse' (default) or 'official' (bug-compatible on non-square grids). */
  vReverse?: VReverse;
}

/**
 * The family of a state dict, from its tensor names; null when it is none of the four. A
 * quantized file counts as the state dict it was made from (its `S.qweight` stand for the FP
 * weights it replaces).
 */
export function detectFamily(stored: ShapeMap): ModelFamily | null {
  const shapes = withReplacedWeights(stored);
  if (shapes.has('layers.0.mixer.x_proj_b.weight') || shapes.has('layers.0.mixer.A_b_log')) return 'vim';
  if (looksLikeLocalVim(shapes)) return 'localvim';
  if (looksLikeLocalVMamba(shapes)) return 'localvmamba';
  if (looksLikeVMamba(shapes) || (shapes.has('patch_embed.5.weight') && shapes.has('layers.0.blocks.0.op.x_proj.weight'))) return 'vmamba';
  if (shapes.has('layers.0.mixer.in_proj.weight')) return 'vim';
  return null;
}

/**
 * The names a quantized file's `S.qweight` tensors replace (S.weight, or VMamba/LocalVMamba's
 * stacked x_proj_weight / dt_projs_weight for a per-direction slice) added to `shapes`, for
 * name-based detection only (the shapes of the added names are not the FP ones).
 */
function withReplacedWeights(shapes: ShapeMap): ShapeMap {
  let out: Map<string, Shape> | null = null;
  for (const [k, shape] of shapes) {
    if (!k.endsWith('.qweight')) continue;
    out ??= new Map(shapes);
    const fp = siteWeightSource(k.slice(0, -'.qweight'.length)).tensor;
    if (!out.has(fp)) out.set(fp, shape);
  }
  return out ?? shapes;
}

/** The family of a state dict or a ConfigError saying what it is not. */
export function modelFamily(shapes: ShapeMap, where: string): ModelFamily {
  const f = detectFamily(shapes);
  if (!f) throw new ConfigError(`${where}: not a Vim, LocalVim, VMamba or LocalVMamba state dict (no layers.0.mixer.* or layers.0.blocks.0.op.* tensors)`);
  return f;
}

/**
 * Renames of tensors stored under another naming scheme of the same family (VMamba's 2025
 * single-file names), applied to shapes; tensors are reshaped views (same data).
 */
export function canonicalTensors<T extends { shape: Shape }>(family: ModelFamily, tensors: ReadonlyMap<string, T>,
  reshape: (t: T, shape: Shape) => T): Map<string, T> {
  const out = new Map(tensors);
  if (family !== 'vmamba') return out;
  const shapes = new Map<string, Shape>([...tensors].map(([k, v]) => [k, v.shape]));
  for (const [to, { from, shape }] of vmambaKeyRenames(shapes)) {
    out.set(to, reshape(tensors.get(from)!, shape));
    out.delete(from);
  }
  return out;
}

/** canonicalTensors over Tensors. */
export function canonicalTensorMap(family: ModelFamily, tensors: ReadonlyMap<string, Tensor>): Map<string, Tensor> {
  return canonicalTensors(family, tensors, (t, shape) => t.reshape(shape));
}

/** The config of a LocalVim / VMamba / LocalVMamba state dict (shapes already canonical), checked against every tensor. */
export function backboneConfig(family: BackboneFamily, shapes: ShapeMap, where: string, raw: unknown | null, hints: BackboneHints = {}): BackboneConfig {
  switch (family) {
    case 'localvim': return localVimConfig(shapes, where, raw, hints);
    case 'vmamba': return vmambaConfig(shapes, where, raw, { imgSize: hints.imgSize });
    case 'localvmamba': return localVMambaConfig(shapes, where, raw, hints);
  }
}

/** One line describing a config (CLI output). */
export function describeBackboneConfig(c: BackboneConfig): string {
  switch (c.arch) {
    case 'localvim':
      return `LocalVim${c.cls_token ? ' (middle class token)' : ''}${c.rope ? ', RoPE' : ''}, ${c.depth} layers, embed ${c.embed_dim}, ` +
        `d_inner ${c.expand * c.embed_dim}, d_state ${c.d_state}, ${c.in_chans}×${c.img_size}×${c.img_size} (patch ${c.patch_size}), ` +
        `${c.num_classes} classes, v-scan reverse ${c.v_reverse}`;
    case 'vmamba':
      return `VMamba v2 (v05_noz), dims ${c.dims.join('/')}, depths ${c.depths.join('/')}, d_state ${c.d_state}, ssm_ratio ${c.ssm_ratio}, ` +
        `mlp_ratio ${c.mlp_ratio}, ${c.in_chans}×${c.img_size}×${c.img_size}, ${c.num_classes} classes`;
    case 'localvmamba':
      return `LocalVMamba, dims ${c.dims.join('/')}, depths ${c.depths.join('/')}, d_state ${c.d_state}, ssm_ratio ${c.ssm_ratio}, ` +
        `${c.in_chans}×${c.img_size}×${c.img_size}, ${c.num_classes} classes, v-scan reverse ${c.v_reverse}`;
  }
}
