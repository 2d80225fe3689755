import type { Act, BackboneOps, Grid, Mat, TapFn } from '../ops.js';
import type { Tensor } from '../../tensor/tensor.js';
import { checkImageBatch } from '../common/tensors.js';
import type { VMambaBlock, VMambaModel, VMambaStage } from './model.js';

/**
 * SS2D (v05_noz) on normalized rows [B·H·W, C] → [B·H·W, C]: in_proj, depthwise conv + SiLU,
 * then for each cross-scan direction a gather into its order, x_proj, dt_proj and the selective
 * scan (no z gate), scattered back and summed (cross-merge); out_norm, out_proj.
 */
export function ss2d<M extends Mat>(ops: BackboneOps<M>, model: VMambaModel, block: VMambaBlock, x: Act<M>, batch: number,
  grid: Grid, tap?: TapFn<M>): M {
  const p = `${block.prefix}.op`;
  const R = block.dirs[0]!.dtProj.inFeatures;
  const N = model.config.d_state;
  const L = grid.H * grid.W;
  const u = ops.linear(x, block.inProj);
  if (tap) tap(`${p}.in_proj`, u);
  const c = ops.depthwiseConv2d(u, batch, grid, block.conv.weight, block.conv.bias, true, block.dirs[0]!.xProj);
  const orders = model.orders.orders(grid.H, grid.W);
  const merged = ops.alloc(batch * L, u.cols);
  block.dirs.forEach((d, k) => {
    const order = orders[k]!;
    const s = order.identity ? c.fp : ops.gatherTokens(c.fp, batch, order);
    if (tap) tap(`${p}.scan_xs.${k}`, s);
    const xd = ops.linear({ fp: s }, d.xProj);
    const delta = ops.linear({ fp: ops.colSlice(xd, 0, R) }, d.dtProj);
    const y = ops.selectiveScan({
      u: s, delta, B: ops.colSlice(xd, R, R + N), C: ops.colSlice(xd, R + N, R + 2 * N),
      A: d.A, D: d.D, deltaBias: d.dtBias, reverse: false,
    }, null, L, block.outProj).fp;
    if (tap) tap(`${p}.scan_ys.${k}`, y);
    // Every direction visits every row once, so the first scatter initializes the sum.
    ops.scatterTokens(y, batch, order, merged, k > 0, null);
  });
  const normed = ops.layerNorm(merged, block.outNorm.weight, block.outNorm.bias, model.config.eps, block.outProj);
  if (tap) tap(`${p}.out_norm`, normed.fp);
  const out = ops.linear(normed, block.outProj);
  if (tap) tap(p, out);
  return out;
}

/** VSSBlock: x + SS2D(LN(x)), then x + MLP(LN2(x)) (fc1, GELU, fc2). */
export function vmambaBlock<M extends Mat>(ops: BackboneOps<M>, model: VMambaModel, block: VMambaBlock, x: M, batch: number,
  grid: Grid, tap?: TapFn<M>): M {
  const eps = model.config.eps;
  const n = ops.layerNorm(x, block.norm.weight, block.norm.bias, eps, block.inProj);
  if (tap) tap(`${block.prefix}.norm`, n.fp);
  let h = ops.add(x, ss2d(ops, model, block, n, batch, grid, tap));
  if (block.mlp) {
    const n2 = ops.layerNorm(h, block.mlp.norm.weight, block.mlp.norm.bias, eps, block.mlp.fc1);
    const a = ops.gelu(ops.linear(n2, block.mlp.fc1), block.mlp.fc2);
    const m = ops.linear(a, block.mlp.fc2);
    if (tap) tap(`${block.prefix}.mlp`, m);
    h = ops.add(h, m);
  }
  if (tap) tap(block.prefix, h);
  return h;
}

/** Stem (patch embed v2): conv 3×3/2, LN, GELU, conv 3×3/2, LN → tokens at H/4 × W/4 (rounded up). */
export function vmambaStem<M extends Mat>(ops: BackboneOps<M>, model: VMambaModel, images: Tensor<'F32'>, tap?: TapFn<M>): { x: M; grid: Grid } {
  const t = (n: string): Tensor<'F32'> => model.tensor(n);
  const eps = model.config.eps;
  const batch = images.dim(0);
  const c1 = ops.conv2dImages(images, t('patch_embed.0.weight'), t('patch_embed.0.bias'), 2, 1);
  const a = ops.gelu(ops.layerNorm(c1.out, t('patch_embed.2.weight'), t('patch_embed.2.bias'), eps, null).fp, null);
  const c2 = ops.conv2d(a.fp, batch, c1.grid, t('patch_embed.5.weight'), t('patch_embed.5.bias'), 2, 1);
  const x = ops.layerNorm(c2.out, t('patch_embed.7.weight'), t('patch_embed.7.bias'), eps, null).fp;
  if (tap) tap('patch_embed', x);
  return { x, grid: c2.grid };
}

/** Downsampling (v3) to the next stage: conv 3×3 stride 2, then LayerNorm. */
export function vmambaDownsample<M extends Mat>(ops: BackboneOps<M>, model: VMambaModel, stage: VMambaStage, x: M, batch: number,
  grid: Grid): { x: M; grid: Grid } {
  const ds = stage.downsample!;
  const d = ops.conv2d(x, batch, grid, ds.conv.weight, ds.conv.bias, 2, 1);
  return { x: ops.layerNorm(d.out, ds.norm.weight, ds.norm.bias, model.config.eps, null).fp, grid: d.grid };
}

/** The whole classifier: images [B, C, H, W] (normalized; any size ≥ 1 pixel) → logits [B, classes]. */
export function vmambaForward<M extends Mat>(ops: BackboneOps<M>, model: VMambaModel, images: Tensor<'F32'>, tap?: TapFn<M>): M {
  checkImageBatch(images, model.config.in_chans, 'VMamba');
  const batch = images.dim(0);
  const eps = model.config.eps;
  let { x, grid } = vmambaStem(ops, model, images, tap);
  for (const stage of model.stages) {
    for (const block of stage.blocks) {
      ops.beginScope();
      x = vmambaBlock(ops, model, block, x, batch, grid, tap);
      ops.endScope([x]);
    }
    if (stage.downsample) {
      ops.beginScope();
      ({ x, grid } = vmambaDownsample(ops, model, stage, x, batch, grid));
      ops.endScope([x]);
    }
    if (tap) tap(`layers.${stage.index}`, x);
  }
  const n = ops.layerNorm(x, model.tensor('classifier.norm.weight'), model.tensor('classifier.norm.bias'), eps, null).fp;
  if (tap) tap('classifier.norm', n);
  const pooled = ops.meanTokens(n, batch);
  if (tap) tap('classifier.flatten', pooled);
  return ops.linear({ fp: pooled }, model.head);
}
