import type { Act, BackboneOps, Grid, Mat, TapFn } from '../ops.js';
import type { Tensor } from '../../tensor/tensor.js';
import { checkImageBatch } from '../common/tensors.js';
import { channelGate } from '../localvim/graph.js';
import type { LocalVMambaBlock, LocalVMambaModel, LocalVMambaStage } from './model.js';

/**
 * LocalVMamba SS2D on normalized rows [B·H·W, C] → [B·H·W, C]: in_proj (x, z), depthwise conv +
 * SiLU on x, then per direction a gather into its scan order (window pads zero after the conv),
 * x_proj, dt_proj, the selective scan, the BiAttn channel gate and a scatter back that sums the
 * directions; out_norm, · silu(z), out_proj. The reference right-pads every sequence to the
 * longest direction and scans that far: the scan is causal and the extra outputs are cut, so
 * each direction here scans its own length only.
 */
export function localSs2d<M extends Mat>(ops: BackboneOps<M>, model: LocalVMambaModel, block: LocalVMambaBlock, x: Act<M>,
  batch: number, grid: Grid, tap?: TapFn<M>): M {
  const p = `${block.prefix}.op`;
  const E = block.outProj.inFeatures;
  const R = block.dirs[0]!.dtProj.inFeatures;
  const N = model.config.d_state;
  const xz = ops.linear(x, block.inProj);
  const xs = ops.colSlice(xz, 0, E);
  if (tap) tap(`${p}.conv2d`, ops.depthwiseConv2d(xs, batch, grid, block.conv.weight, block.conv.bias, false, null).fp);
  const u = ops.depthwiseConv2d(xs, batch, grid, block.conv.weight, block.conv.bias, true, block.dirs[0]!.xProj).fp;
  const orders = model.orders(block, grid.H, grid.W);
  const sum = ops.alloc(batch * grid.H * grid.W, E);
  block.dirs.forEach((d, k) => {
    const order = orders[k]!;
    const s = order.identity ? u : ops.gatherTokens(u, batch, order);
    if (tap) tap(`${p}.scan_u.${k}`, s);
    const xd = ops.linear({ fp: s }, d.xProj);
    const delta = ops.linear({ fp: ops.colSlice(xd, 0, R) }, d.dtProj);
    const y = ops.selectiveScan({
      u: s, delta, B: ops.colSlice(xd, R, R + N), C: ops.colSlice(xd, R + N, R + 2 * N),
      A: d.A, D: d.D, deltaBias: d.dtBias, reverse: false,
    }, null, order.steps, block.outProj).fp;
    if (tap) tap(`${p}.scan_y.${k}`, y);
    const g = channelGate(ops, block.gate, y, batch, order);
    if (tap) {
      const attn = ops.alloc(batch * grid.H * grid.W, E);
      ops.scatterTokens(y, batch, order, attn, false, g);
      tap(`${p}.multi_scan.attn.${k}`, attn);
    }
    ops.scatterTokens(y, batch, order, sum, k > 0, g);
  });
  const normed = ops.layerNorm(sum, block.outNorm.weight, block.outNorm.bias, model.config.eps, null);
  if (tap) tap(`${p}.out_norm`, normed.fp);
  const gated = ops.mulSilu(normed.fp, ops.colSlice(xz, E, 2 * E), block.outProj);
  const out = ops.linear(gated, block.outProj);
  if (tap) tap(p, out);
  return out;
}

/** VSSBlock without MLP: x + SS2D(LN(x)). */
export function localVMambaBlock<M extends Mat>(ops: BackboneOps<M>, model: LocalVMambaModel, block: LocalVMambaBlock, x: M,
  batch: number, grid: Grid, tap?: TapFn<M>): M {
  const n = ops.layerNorm(x, block.norm.weight, block.norm.bias, model.config.eps, block.inProj);
  if (tap) tap(`${block.prefix}.norm`, n.fp);
  const h = ops.add(x, localSs2d(ops, model, block, n, batch, grid, tap));
  if (tap) tap(block.prefix, h);
  return h;
}

/** Stem: conv patch_size × patch_size with that stride, then LayerNorm: tokens [B·H/P·W/P, C]. */
export function localVMambaStem<M extends Mat>(ops: BackboneOps<M>, model: LocalVMambaModel, images: Tensor<'F32'>): M {
  const c = model.config;
  const t = (n: string): Tensor<'F32'> => model.tensor(n);
  const stem = ops.patchEmbed(images, t('patch_embed.0.weight'), t('patch_embed.0.bias'), c.patch_size);
  return ops.layerNorm(stem, t('patch_embed.2.weight'), t('patch_embed.2.bias'), c.eps, null).fp;
}

/** Swin patch merging to the next stage: 2×2 merge, LayerNorm(4C), reduction 4C → 2C. */
export function localVMambaDownsample<M extends Mat>(ops: BackboneOps<M>, model: LocalVMambaModel, stage: LocalVMambaStage, x: M,
  batch: number, grid: Grid): { x: M; grid: Grid } {
  const ds = stage.downsample!;
  const merged = ops.patchMerge(x, batch, grid);
  const n = ops.layerNorm(merged.out, ds.norm.weight, ds.norm.bias, model.config.eps, ds.reduction);
  return { x: ops.linear(n, ds.reduction), grid: merged.grid };
}

/** The whole classifier: images [B, C, H, W] (normalized; H, W ≥ patch size) → logits [B, classes]. */
export function localVMambaForward<M extends Mat>(ops: BackboneOps<M>, model: LocalVMambaModel, images: Tensor<'F32'>, tap?: TapFn<M>): M {
  const c = model.config;
  checkImageBatch(images, c.in_chans, 'LocalVMamba');
  if (images.dim(2) < c.patch_size || images.dim(3) < c.patch_size) {
    throw new RangeError(`LocalVMamba: images of ${images.dim(2)}×${images.dim(3)} are smaller than one ${c.patch_size}-pixel patch`);
  }
  const batch = images.dim(0);
  const t = (n: string): Tensor<'F32'> => model.tensor(n);
  let x = localVMambaStem(ops, model, images);
  if (tap) tap('patch_embed', x);
  let grid: Grid = model.stageGrids(images.dim(2), images.dim(3))[0]!;
  for (const stage of model.stages) {
    for (const block of stage.blocks) {
      ops.beginScope();
      x = localVMambaBlock(ops, model, block, x, batch, grid, tap);
      ops.endScope([x]);
    }
    if (stage.downsample) {
      ops.beginScope();
      ({ x, grid } = localVMambaDownsample(ops, model, stage, x, batch, grid));
      ops.endScope([x]);
    }
    if (tap) tap(`layers.${stage.index}`, x);
  }
  const n = ops.layerNorm(x, t('classifier.norm.weight'), t('classifier.norm.bias'), c.eps, null).fp;
  if (tap) tap('classifier.norm', n);
  const pooled = ops.meanTokens(n, batch);
  if (tap) tap('classifier.flatten', pooled);
  return ops.linear({ fp: pooled }, model.head);
}
