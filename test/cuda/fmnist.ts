import { preprocessFromModel, resolveDataset } from '../../lib/data/index.js';
import type { Mat, ModelOps } from '../../lib/models/ops.js';
import { vimForward } from '../../lib/models/vim/graph.js';
import type { VimModel } from '../../lib/models/vim/model.js';
import { evaluateDataset } from '../../lib/runtime/evaluate.js';
import { Tensor } from '../../lib/tensor/tensor.js';

/** Top-1 and the predictions of a model run by `ops` on the first `limit` Fashion-MNIST test images. */
export async function fmnistTop1(ops: ModelOps<Mat>, model: VimModel, limit?: number, batchSize = 250): Promise<{ top1: number; preds: Int32Array; n: number }> {
  const dataset = await resolveDataset('fmnist');
  const preprocess = preprocessFromModel({ in_chans: model.config.in_chans, img_size: model.config.img_size }, model.metadata, 'vim-fmnist');
  const forward = async (images: Tensor<'F32'>): Promise<Tensor<'F32'>> => {
    try {
      const logits = ops.toHost(vimForward(ops, model, images));
      return new Tensor('F32', [images.dim(0), model.config.num_classes], logits);
    } finally {
      ops.endForward();
    }
  };
  const r = await evaluateDataset(forward, dataset, { preprocess, batchSize, limit, strict: true });
  return { top1: r.top1, preds: r.preds, n: r.n };
}

/** Fraction of equal entries. */
export function agreement(a: Int32Array, b: Int32Array): number {
  let same = 0;
  for (let i = 0; i < a.length; i++) if (a[i] === b[i]) same++;
  return same / a.length;
}
