import { preprocessFromModel, type Dataset } from '../data/index.js';
import type { VimModel } from '../models/vim/model.js';
import { Tensor } from '../tensor/tensor.js';

/**
 * The calibration images: the first `count` images of the data set, preprocessed for the model,
 * as one tensor [count, C, H, W]. Fails if the set is smaller than asked.
 */
export async function loadCalibrationImages(model: VimModel, dataset: Dataset, count: number, where: string): Promise<Tensor<'F32'>> {
  const c = model.config;
  const preprocess = preprocessFromModel({ in_chans: c.in_chans, img_size: c.img_size }, { ...model.metadata }, where);
  if (dataset.length < count) throw new Error(`${dataset.source}: the calibration set has ${dataset.length} images, ${count} were asked for`);
  const per = c.in_chans * c.img_size * c.img_size;
  const out = new Float32Array(count * per);
  let n = 0;
  for await (const b of dataset.batches({ preprocess, batchSize: 64, limit: count })) {
    const k = b.images.dim(0);
    out.set(b.images.data.subarray(0, k * per), n * per);
    n += k;
  }
  if (n < count) throw new Error(`${dataset.source}: only ${n} of ${count} calibration images could be decoded`);
  return new Tensor('F32', [count, c.in_chans, c.img_size, c.img_size], out);
}
