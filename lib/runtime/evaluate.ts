import type { Batch, BatchOptions, Dataset } from '../data/index.js';
import type { Tensor } from '../tensor/tensor.js';

export interface EvalResult {
  /** Fractions of labelled images. */
  top1: number;
  top5: number;
  n: number;
  skipped: number;
  /** Predicted class per evaluated image, in data set order (−1 for skipped images). */
  preds: Int32Array;
  seconds: number;
  imagesPerSecond: number;
}

/** Indices of the k largest values of row r (descending). */
export function topK(logits: Float32Array, cols: number, r: number, k: number): number[] {
  const best: number[] = [];
  for (let c = 0; c < cols; c++) {
    const v = logits[r * cols + c]!;
    let i = best.length;
    while (i > 0 && logits[r * cols + best[i - 1]!]! < v) i--;
    if (i < k) {
      best.splice(i, 0, c);
      if (best.length > k) best.pop();
    }
  }
  return best;
}

/**
 * Streams a data set through `forward` (batches are decoded ahead while the previous one runs)
 * and scores top-1/top-5.
 */
export async function evaluateDataset(
  forward: (images: Tensor<'F32'>) => Promise<Tensor<'F32'>>,
  dataset: Dataset,
  opts: BatchOptions & { onBatch?: (done: number, total: number, top1: number) => void },
): Promise<EvalResult> {
  const total = Math.min(dataset.length, opts.limit ?? dataset.length);
  const preds = new Int32Array(total).fill(-1);
  let n = 0, labelled = 0, c1 = 0, c5 = 0, skipped = 0;
  const t0 = performance.now();
  const score = (batch: Batch, logits: Tensor<'F32'>) => {
    const cols = logits.dim(1);
    for (let i = 0; i < batch.indices.length; i++) {
      const top = topK(logits.data, cols, i, Math.min(5, cols));
      preds[batch.indices[i]!] = top[0]!;
      const label = batch.labels[i]!;
      if (label >= 0) {
        labelled++;
        if (top[0] === label) c1++;
        if (top.includes(label)) c5++;
      }
    }
    n += batch.indices.length;
    skipped += batch.skipped;
    opts.onBatch?.(n + skipped, total, labelled ? c1 / labelled : 0);
  };
  for await (const batch of dataset.batches(opts)) {
    if (batch.indices.length === 0) {
      skipped += batch.skipped;
      continue;
    }
    score(batch, await forward(batch.images));
  }
  const seconds = (performance.now() - t0) / 1000;
  return { top1: labelled ? c1 / labelled : NaN, top5: labelled ? c5 / labelled : NaN, n, skipped, preds, seconds, imagesPerSecond: n / seconds };
}
