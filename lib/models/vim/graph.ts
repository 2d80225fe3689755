import type { Act, Mat, ModelOps, ScanDirection, TapFn } from '../ops.js';
import type { Tensor } from '../../tensor/tensor.js';
import type { VimDirectionParams, VimLayer, VimModel } from './model.js';

function tapAct<M extends Mat>(tap: TapFn<M> | undefined, name: string, a: Act<M>): void {
  if (tap && a.fp) tap(name, a.fp);
}

/** The sizes a mixer needs (a VimModel has them; so can a hand-built test mixer). */
export interface VimMixerShape {
  dims: Pick<VimModel['dims'], 'dInner' | 'dtRank' | 'seqLen'>;
  config: Pick<VimModel['config'], 'd_state'>;
}

/**
 * One Vim mixer (bimamba v2, "div2" combine) on normalized input rows [B·L, D]; returns [B·L, D].
 * The backward branch runs in original token order with reversed conv and scan (equal to the
 * reference's flip → forward → flip).
 */
export function vimMixer<M extends Mat>(ops: ModelOps<M>, model: VimMixerShape, layer: VimLayer, normed: Act<M>, tap?: TapFn<M>): M {
  const { dInner: E, dtRank: R } = model.dims;
  const N = model.config.d_state;
  const p = `layers.${layer.index}.mixer.`;
  tapAct(tap, p + 'in_proj.in', normed);
  const xz = ops.linear(normed, layer.inProj);
  const x = ops.colSlice(xz, 0, E);
  const z = ops.colSlice(xz, E, 2 * E);
  const direction = (d: VimDirectionParams, reverse: boolean): ScanDirection<M> => {
    const s = reverse ? '_b' : '';
    const c = ops.conv1dSilu(x, model.dims.seqLen, d.conv.weight, d.conv.bias, reverse, d.xProj);
    tapAct(tap, `${p}x_proj${s}.in`, c);
    const xd = ops.linear(c, d.xProj);
    const dtIn: Act<M> = { fp: ops.colSlice(xd, 0, R) };
    tapAct(tap, `${p}dt_proj${s}.in`, dtIn);
    const delta = ops.linear(dtIn, d.dtProj);
    return {
      u: c.fp, delta, B: ops.colSlice(xd, R, R + N), C: ops.colSlice(xd, R + N, R + 2 * N),
      A: d.A, D: d.D, deltaBias: d.dtBias, reverse,
    };
  };
  const dirs = [direction(layer.fwd, false), direction(layer.bwd, true)] as const;
  const y = ops.bidirectionalScan(dirs, z, model.dims.seqLen, layer.outProj);
  tapAct(tap, p + 'out_proj.in', y);
  const out = ops.linear(y, layer.outProj);
  if (tap) tap(`layers.${layer.index}.out`, out);
  return out;
}

/** Patch embedding + class token + position embedding: [B·L, D]. */
export function vimEmbed<M extends Mat>(ops: ModelOps<M>, model: VimModel, images: Tensor<'F32'>): M {
  const c = model.config;
  const patches = ops.patchEmbed(images, model.tensor('patch_embed.proj.weight'), model.tensor('patch_embed.proj.bias'), c.stride);
  return ops.assembleTokens(patches, images.dim(0), model.tensor('cls_token'), model.tensor('pos_embed'), model.dims.clsPos);
}

/** The residual stream between blocks, as the mamba Block passes it. */
export interface VimStream<M extends Mat> {
  hidden: M;
  residual: M | null;
}

/** Runs block i: residual += hidden; hidden = mixer(RMSNorm(residual)). */
export function vimBlock<M extends Mat>(ops: ModelOps<M>, model: VimModel, i: number, s: VimStream<M>, tap?: TapFn<M>): VimStream<M> {
  const layer = model.layers[i]!;
  const { residual, normed } = ops.addNorm(s.hidden, s.residual, layer.norm, model.config.eps, layer.inProj);
  return { hidden: vimMixer(ops, model, layer, normed, tap), residual };
}

/** Final add + norm at the class token of every image, then the head: logits [B, classes]. */
export function vimHead<M extends Mat>(ops: ModelOps<M>, model: VimModel, s: VimStream<M>, batch: number): M {
  const { seqLen, clsPos } = model.dims;
  const h = ops.gatherRows(s.hidden, clsPos, seqLen, batch);
  const r = s.residual ? ops.gatherRows(s.residual, clsPos, seqLen, batch) : null;
  const { normed } = ops.addNorm(h, r, model.tensor('norm_f.weight'), model.config.eps, null);
  return ops.linear(normed, model.head);
}

/** The whole classifier: images [B, C, H, W] (normalized) → logits [B, classes]. */
export function vimForward<M extends Mat>(ops: ModelOps<M>, model: VimModel, images: Tensor<'F32'>, tap?: TapFn<M>): M {
  let s: VimStream<M> = { hidden: vimEmbed(ops, model, images), residual: null };
  for (let i = 0; i < model.layers.length; i++) {
    ops.beginScope();
    s = vimBlock(ops, model, i, s, tap);
    ops.endScope([s.hidden, s.residual]);
  }
  return vimHead(ops, model, s, images.dim(0));
}
