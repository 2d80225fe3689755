import type { Mat, ModelOps } from '../models/ops.js';
import { vimForward } from '../models/vim/graph.js';
import type { VimModel } from '../models/vim/model.js';
import { formatShape, Tensor } from '../tensor/tensor.js';
import { CpuExecutor, type QuantMode } from './cpu-executor.js';

export type Device = 'cpu' | 'cuda';
/** fp32/fp16: every linear in floating point; int8: quantized linears on INT8 kernels; fake-quant: their simulation. */
export type Precision = 'fp32' | 'fp16' | 'int8' | 'fake-quant';

export class InputError extends Error {
  override name = 'InputError';
}

/** Checks images [B, C, H, W] against the model's input. */
export function checkImages(model: VimModel, images: Tensor, where = 'input'): Tensor<'F32'> {
  const c = model.config;
  const want = [c.in_chans, c.img_size, c.img_size];
  if (images.rank !== 4 || images.shape.slice(1).some((d, i) => d !== want[i]) || images.dim(0) < 1) {
    throw new InputError(`${where} has shape ${formatShape(images.shape)}, the model takes [B, ${want.join(', ')}]`);
  }
  const f = images.toFloat32();
  for (let i = 0; i < f.data.length; i++) {
    if (!Number.isFinite(f.data[i]!)) throw new InputError(`${where} holds a non-finite value at element ${i}`);
  }
  return f;
}

/** A model bound to an executor: runs batches of images to logits, synchronously (call it off the main thread). */
export class ModelRunner {
  readonly model: VimModel;
  readonly ops: ModelOps<Mat>;
  readonly device: Device;
  readonly precision: Precision;

  constructor(model: VimModel, opts: { device?: Device; precision?: Precision } = {}) {
    this.device = opts.device ?? 'cpu';
    if (this.device !== 'cpu') throw new InputError(`device ${this.device} is not available in this build`);
    const precision = opts.precision ?? (model.isQuantized ? 'int8' : 'fp32');
    if (precision === 'fp16') throw new InputError('fp16 runs on --device cuda only');
    if ((precision === 'int8' || precision === 'fake-quant') && !model.isQuantized) {
      throw new InputError(`precision ${precision} needs a quantized model (run 'ptq4vm calibrate' first)`);
    }
    this.precision = precision;
    this.model = model;
    const quantMode: QuantMode = precision === 'fake-quant' ? 'fake' : precision === 'fp32' ? 'off' : 'int8';
    this.ops = new CpuExecutor({ quantMode }) as unknown as ModelOps<Mat>;
  }

  /** images [B, C, H, W] (normalized) → logits [B, classes]. */
  forward(images: Tensor): Tensor<'F32'> {
    const x = checkImages(this.model, images);
    try {
      const logits = vimForward(this.ops, this.model, x);
      return new Tensor('F32', [x.dim(0), this.model.config.num_classes], this.ops.toHost(logits));
    } finally {
      this.ops.endForward();
    }
  }
}
