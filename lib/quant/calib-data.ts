import { preprocessFromModel, sampleIndices, type Dataset } from '../data/index.js';
import type { AnyModel } from '../models/load.js';
import { Tensor } from '../tensor/tensor.js';

/**
 * The calibration images: `count` images drawn from the data set by `seed` (all of them, in
 * order, when it has exactly `count`), preprocessed for the model, as one tensor [count, C, H, W].
 * Drawing rather than taking the first ones matters for class-sorted folders such as ImageNet's.
 * Any family: images come square, at the model's (nominal) img_size unless `size` says otherwise
 * (VMamba / LocalVMamba take any size; the resize before the centre crop follows `size` the way
 * it follows img_size).
 */
export async function loadCalibrationImages(model: AnyModel, dataset: Dataset, count: number, where: string, seed = 0,
  size = model.config.img_size): Promise<Tensor<'F32'>> {
  const c = model.config;
  const preprocess = preprocessFromModel({ in_chans: c.in_chans, img_size: size }, { ...model.metadata }, where);
  if (dataset.length < count) throw new Error(`${dataset.source}: the calibration set has ${dataset.length} images, ${count} were asked for`);
  const per = c.in_chans * size * size;
  const out = new Float32Array(count * per);
  let n = 0;
  const indices = dataset.length === count ? undefined : sampleIndices(dataset.length, count, seed);
  for await (const b of dataset.batches({ preprocess, batchSize: 64, limit: indices ? undefined : count, indices })) {
    const k = b.images.dim(0);
    out.set(b.images.data.subarray(0, k * per), n * per);
    n += k;
  }
  if (n < count) throw new Error(`${dataset.source}: only ${n} of ${count} calibration images could be decoded`);
  return new Tensor('F32', [count, c.in_chans, size, size], out);
}
