/**
 * The linears PTQ4VM quantizes in a model of any family, and where each one's FP weight lives in
 * the state dict (its own `S.weight`, or one slice of VMamba's stacked per-direction tensors):
 * shared by calibration, the quantized-file writer and its loader.
 */
import { VIM_LINEARS, VimModel } from '../vim/model.js';
import type { QuantizableSite } from '../localvim/model.js';
import type { BackboneModel } from './forward.js';

export type { QuantizableSite } from '../localvim/model.js';

/**
 * Every quantizable linear, unit by unit in graph order, with its per-image token count (its
 * number of per-token activation parameters) for inputs of H×W; VMamba and LocalVMamba counts
 * follow the stage grids, the others' inputs have one size.
 */
export function quantizableSites(model: VimModel | BackboneModel, H = model.config.img_size, W = model.config.img_size): QuantizableSite[] {
  if (model instanceof VimModel) {
    const L = model.dims.seqLen;
    return model.layers.flatMap((l) => VIM_LINEARS.map((n) => ({ site: model.linears(l.index)[n], tokens: L })));
  }
  if (model.arch === 'localvim') return [...model.quantizableSites()];
  return [...model.quantizableSites(H, W)];
}

/** VMamba / LocalVMamba per-direction projections: slice k of `op.x_proj_weight` / `op.dt_projs_weight`. */
const STACKED = /^(.+\.op\.)(x_proj|dt_projs)\.(\d+)$/;

/** The state-dict tensor a site's weight comes from, and its index along dim 0 when it is a slice of a stacked tensor. */
export function siteWeightSource(name: string): { tensor: string; index: number | null } {
  const m = STACKED.exec(name);
  if (!m) return { tensor: `${name}.weight`, index: null };
  return { tensor: `${m[1]}${m[2] === 'x_proj' ? 'x_proj_weight' : 'dt_projs_weight'}`, index: Number(m[3]) };
}
