/**
 * The images each family takes: Vim and LocalVim have position embeddings, so exactly their
 * img_size; VMamba and LocalVMamba build their stage grids (and scan orders) from the input,
 * so any H×W from a minimum up. Shared by the runtime's input check and `ptq4vm info`.
 */
import type { VimModel } from '../vim/model.js';
import type { BackboneModel } from './forward.js';

export interface ModelInput {
  channels: number;
  /** The nominal square side (config img_size): what image preprocessing produces. */
  size: number;
  /** Whether H×W other than size×size are accepted. */
  anySize: boolean;
  /** With anySize: the smallest accepted H and W (VMamba: 1 pixel; LocalVMamba: one patch). */
  minSide: number;
  /**
   * A quantized VMamba / LocalVMamba: the one H×W it takes (its per-token parameters follow the
   * stage grids of the size it was calibrated for); anySize is then false.
   */
  fixed?: { H: number; W: number };
}

/** Largest accepted H or W (as config img_size): bounds the buffers a single image can ask for. */
export const MAX_IMAGE_SIDE = 8192;

export function modelInput(model: VimModel | BackboneModel): ModelInput {
  const c = model.config;
  switch (c.arch) {
    case 'vim':
    case 'localvim':
      return { channels: c.in_chans, size: c.img_size, anySize: false, minSide: c.img_size };
    case 'vmamba':
    case 'localvmamba': {
      const minSide = c.arch === 'vmamba' ? 1 : c.patch_size;
      const size = model.quantMetadata?.input_size;
      if (size && model.isQuantized) return { channels: c.in_chans, size: c.img_size, anySize: false, minSide, fixed: { H: size[0], W: size[1] } };
      return { channels: c.in_chans, size: c.img_size, anySize: true, minSide };
    }
  }
}

/**
 * Why images of `shape` [B, C, H, W] do not fit the model, or null when they do. The message
 * says what the model takes, e.g. "[B, 3, 224, 224]" or "[B, 3, H, W] with 4 ≤ H, W ≤ 8192".
 */
export function imageShapeProblem(input: ModelInput, shape: readonly number[]): string | null {
  const { channels: C, size, anySize, minSide, fixed } = input;
  const want = fixed ? `[B, ${C}, ${fixed.H}, ${fixed.W}] (the size it was quantized for)`
    : anySize ? `[B, ${C}, H, W] with ${minSide} ≤ H, W ≤ ${MAX_IMAGE_SIDE}` : `[B, ${C}, ${size}, ${size}]`;
  if (shape.length !== 4 || shape[0]! < 1 || shape[1] !== C) return want;
  const [H, W] = [shape[2]!, shape[3]!];
  const ok = fixed ? H === fixed.H && W === fixed.W
    : anySize ? H >= minSide && W >= minSide && H <= MAX_IMAGE_SIDE && W <= MAX_IMAGE_SIDE : H === size && W === size;
  return ok ? null : want;
}

/**
 * Tokens per image entering the first block at the nominal size: Vim/LocalVim's sequence length
 * (class token included); VMamba/LocalVMamba's first-stage grid, the longest of their stages.
 */
export function firstStageTokens(model: VimModel | BackboneModel): number {
  if ('stageGrids' in model) {
    const g = model.stageGrids(model.config.img_size, model.config.img_size)[0]!;
    return g.H * g.W;
  }
  return model.dims.seqLen;
}
