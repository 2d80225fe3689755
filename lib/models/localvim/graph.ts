import type { Act, BackboneOps, Mat, TapFn } from '../ops.js';
import { Tensor } from '../../tensor/tensor.js';
import { checkImageBatch } from '../common/tensors.js';
import type { ChannelGate, LocalVimLayer, LocalVimModel } from './model.js';

/**
 * BiAttn channel gate of one direction's output y (scan order, pads included): [B, d_inner].
 * The gate averages LayerNorm(y) over the real tokens; a mean is order-free, so it is taken in
 * scan order with the pad rows skipped (`select`), which equals the reference's mean after the
 * reverse.
 */
export function channelGate<M extends Mat>(ops: BackboneOps<M>, gate: ChannelGate, y: M, batch: number,
  select: Parameters<BackboneOps<M>['layerNormTokenMean']>[5]): M {
  const s = ops.layerNormTokenMean(y, batch, gate.norm.weight, gate.norm.bias, 1e-5, select);
  const h = ops.gelu(ops.linear({ fp: s }, gate.reduce), gate.select);
  return ops.sigmoid(ops.linear(h, gate.select));
}

/**
 * One MultiMamba mixer on normalized rows [B·L, D] → [B·L, D]: in_proj, then per direction a
 * gather into its scan order (window pads zero in x and z), causal conv1d + SiLU, x_proj, dt_proj,
 * the selective scan gated by silu(z), the channel gate, and a scatter back that sums the
 * directions; then out_proj.
 */
export function localVimMixer<M extends Mat>(ops: BackboneOps<M>, model: LocalVimModel, layer: LocalVimLayer, normed: Act<M>,
  batch: number, tap?: TapFn<M>): M {
  const { dInner: E, seqLen: L } = model.dims;
  const R = model.config.dt_rank;
  const N = model.config.d_state;
  const p = `layers.${layer.index}.mixer`;
  const xz = ops.linear(normed, layer.inProj);
  if (tap) tap(`${p}.in_proj`, xz);
  const sum = ops.alloc(batch * L, E);
  layer.dirs.forEach((d, k) => {
    const seq = d.order.identity ? xz : ops.gatherTokens(xz, batch, d.order);
    const Lk = d.order.steps;
    const u = ops.conv1dSilu(ops.colSlice(seq, 0, E), Lk, d.conv.weight, d.conv.bias, false, d.xProj);
    const xd = ops.linear(u, d.xProj);
    const delta = ops.linear({ fp: ops.colSlice(xd, 0, R) }, d.dtProj);
    const y = ops.selectiveScan({
      u: u.fp, delta, B: ops.colSlice(xd, R, R + N), C: ops.colSlice(xd, R + N, R + 2 * N),
      A: d.A, D: d.D, deltaBias: d.dtBias, reverse: false,
    }, ops.colSlice(seq, E, 2 * E), Lk, layer.outProj).fp;
    if (tap) tap(`${p}.scan_out_z.${k}`, y);
    const g = channelGate(ops, layer.gate, y, batch, d.order);
    if (tap) {
      const attnOut = ops.alloc(batch * L, E);
      ops.scatterTokens(y, batch, d.order, attnOut, false, g);
      tap(`${p}.attn_out.${k}`, attnOut);
    }
    // Every direction visits every row once, so the first scatter initializes the sum.
    ops.scatterTokens(y, batch, d.order, sum, k > 0, g);
  });
  const out = ops.linear({ fp: sum }, layer.outProj);
  if (tap) tap(p, out);
  return out;
}

/** Images padded with zeros at the bottom/right to a multiple of the patch size (timm's dynamic_img_pad). */
function padImages(images: Tensor<'F32'>, P: number): Tensor<'F32'> {
  const [B, C, H, W] = images.shape as [number, number, number, number];
  const Hp = Math.ceil(H / P) * P;
  const Wp = Math.ceil(W / P) * P;
  if (Hp === H && Wp === W) return images;
  const out = new Tensor('F32', [B, C, Hp, Wp]);
  for (let bc = 0; bc < B * C; bc++) {
    for (let y = 0; y < H; y++) out.data.set(images.data.subarray((bc * H + y) * W, (bc * H + y + 1) * W), (bc * Hp + y) * Wp);
  }
  return out;
}

/** The residual stream between layers, as mamba's Block passes it. */
export interface LocalVimStream<M extends Mat> {
  hidden: M;
  residual: M | null;
}

/** Patch embedding (+ class token) + position embedding: [B·L, D]. */
export function localVimEmbed<M extends Mat>(ops: BackboneOps<M>, model: LocalVimModel, images: Tensor<'F32'>, tap?: TapFn<M>): M {
  const c = model.config;
  checkImageBatch(images, c.in_chans, 'LocalVim', { H: c.img_size, W: c.img_size });
  const batch = images.dim(0);
  const w = model.tensor('patch_embed.proj.weight');
  const patches = ops.patchEmbed(padImages(images, c.patch_size), w, model.tensor('patch_embed.proj.bias'), c.patch_size);
  if (tap) tap('patch_embed', patches);
  const pos = model.tensor('pos_embed');
  if (model.dims.clsPos !== null) return ops.assembleTokens(patches, batch, model.tensor('cls_token'), pos, model.dims.clsPos);
  return ops.addPositions(patches, batch, pos.reshape([model.dims.seqLen, c.embed_dim]));
}

/** Layer i: RoPE (hidden, and the residual once it exists), residual += hidden, RMSNorm, mixer. */
export function localVimBlock<M extends Mat>(ops: BackboneOps<M>, model: LocalVimModel, i: number, s: LocalVimStream<M>,
  batch: number, tap?: TapFn<M>): LocalVimStream<M> {
  const layer = model.layers[i]!;
  let { hidden, residual } = s;
  if (model.config.rope) {
    const L = model.dims.patches;
    const D = model.config.embed_dim;
    const cos = model.tensor('rope.freqs_cos').reshape([L, D]);
    const sin = model.tensor('rope.freqs_sin').reshape([L, D]);
    hidden = ops.rope(hidden, batch, cos, sin);
    if (residual) residual = ops.rope(residual, batch, cos, sin);
  }
  if (tap) {
    tap(`layers.${i}.in_hidden`, hidden);
    if (residual) tap(`layers.${i}.in_residual`, residual);
  }
  const added = ops.addNorm(hidden, residual, layer.norm, model.config.eps, layer.inProj);
  const out = localVimMixer(ops, model, layer, added.normed, batch, tap);
  if (tap) {
    tap(`layers.${i}.out_hidden`, out);
    tap(`layers.${i}.out_residual`, added.residual);
  }
  return { hidden: out, residual: added.residual };
}

/** Final add + RMSNorm, then the class token's row (middle-cls variant) or the mean over tokens, then the head. */
export function localVimHead<M extends Mat>(ops: BackboneOps<M>, model: LocalVimModel, s: LocalVimStream<M>, batch: number, tap?: TapFn<M>): M {
  const { seqLen, clsPos } = model.dims;
  let features: M;
  if (clsPos !== null) {
    const h = ops.gatherRows(s.hidden, clsPos, seqLen, batch);
    const r = s.residual ? ops.gatherRows(s.residual, clsPos, seqLen, batch) : null;
    features = ops.addNorm(h, r, model.tensor('norm_f.weight'), model.config.eps, null).normed.fp!;
  } else {
    const { normed } = ops.addNorm(s.hidden, s.residual, model.tensor('norm_f.weight'), model.config.eps, null);
    features = ops.meanTokens(normed.fp!, batch);
  }
  if (tap) tap('head_in', features);
  return ops.linear({ fp: features }, model.head);
}

/** The whole classifier: images [B, C, H, W] (normalized, img_size square) → logits [B, classes]. */
export function localVimForward<M extends Mat>(ops: BackboneOps<M>, model: LocalVimModel, images: Tensor<'F32'>, tap?: TapFn<M>): M {
  const batch = images.dim(0);
  let s: LocalVimStream<M> = { hidden: localVimEmbed(ops, model, images, tap), residual: null };
  for (let i = 0; i < model.layers.length; i++) {
    ops.beginScope();
    s = localVimBlock(ops, model, i, s, batch, tap);
    ops.endScope([s.hidden, s.residual]);
  }
  return localVimHead(ops, model, s, batch, tap);
}
