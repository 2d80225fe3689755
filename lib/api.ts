/**
 * The programmatic API: load a model once, classify images or tensors from anywhere in a program.
 *
 * ```ts
 * import { loadModel } from 'ptq4vm';
 * const model = await loadModel('vim-fmnist');              // or a .safetensors / .pth path
 * const [top] = await model.classify(await readFile('shoe.png'), { topk: 3 });
 * // top = [{ class: 9, label: 'Ankle boot', prob: 0.91 }, …]
 * await model.dispose();
 * ```
 *
 * The model runs in a worker thread and images decode on libuv's thread pool, so no call blocks
 * the event loop for longer than copying its inputs; any number of callers may classify at once
 * (their forwards queue in the worker).
 */
import { JobLimiter } from './data/dataset.js';
import { DEFAULT_MAX_PIXELS, decodeImageInto, sniffImageFormat } from './data/decode.js';
import { DataError } from './data/errors.js';
import { preprocessFromModel, type Preprocess } from './data/preprocess.js';
import { FASHION_MNIST_CLASSES } from './data/resolve.js';
import { readSafetensorsHeader } from './io/safetensors.js';
import { BUILTIN_MODELS, resolveModelPath } from './models/load.js';
import { preprocessSide, type ModelInfo } from './runtime/describe.js';
import { EngineError, InferenceEngine } from './runtime/engine.js';
import { InputError } from './runtime/errors.js';
import type { Device, Precision } from './runtime/forward.js';
import { formatShape, Tensor } from './tensor/tensor.js';

export type { Device, Precision } from './runtime/forward.js';
export type { ModelInfo } from './runtime/describe.js';
export type { Preprocess } from './data/preprocess.js';

export interface LoadModelOptions {
  /** cpu (default) or cuda. */
  device?: Device;
  /** fp32 | fp16 | int8 | fake-quant; default int8 for a quantized model, else fp32. */
  precision?: Precision;
  /** CPU threads of the kernels (default: the runtime's choice). */
  threads?: number;
  /** Image size of an official checkpoint (.pth), which does not record it (default 224). */
  imgSize?: number;
  /** Largest decoded width·height accepted per image (decompression bombs); default libvips's 0x3FFF². */
  maxPixels?: number;
  /** Images per engine forward when `classify` gets many at once (default 64). */
  maxBatch?: number;
}

/** One class of a classification, best first. */
export interface Prediction {
  /** Class index. */
  class: number;
  /** Class name from the model's metadata (`labels`), Fashion-MNIST's for the built-in vim-fmnist, else null. */
  label: string | null;
  /** Softmax probability. */
  prob: number;
}

export interface ClassifyOptions {
  /** Classes reported per image, best first (default 5, at most the number of classes). */
  topk?: number;
}

/**
 * What `classify` takes: an encoded image (PNG, JPEG or WebP bytes, preprocessed as the model's
 * metadata says) or an already-normalized Tensor, [C, H, W] for one image or [B, C, H, W] for B.
 */
export type ClassifyInput = Uint8Array | Tensor;

const DEFAULT_TOPK = 5;

/** A loaded model. Create with `loadModel`; call `dispose` when done (it ends the worker thread). */
export class Model {
  /** Config, precision, device, quantization, normalization and labels as loaded. */
  readonly info: ModelInfo;
  /** How encoded images become model input (from the model's metadata). */
  readonly preprocess: Preprocess;
  /** Class names by index, or null when the model has none. */
  readonly labels: readonly string[] | null;
  /** The model file that was loaded. */
  readonly path: string;
  private readonly engine: InferenceEngine;
  private readonly maxPixels: number;
  private readonly maxBatch: number;
  /** Shared by every caller, so concurrent classify calls together decode at most this many images at once. */
  private readonly decoders: JobLimiter;

  /** @internal use loadModel */
  constructor(engine: InferenceEngine, path: string, preprocess: Preprocess, labels: readonly string[] | null, opts: LoadModelOptions) {
    this.engine = engine;
    this.info = engine.info;
    this.path = path;
    this.preprocess = preprocess;
    this.labels = labels;
    this.maxPixels = opts.maxPixels ?? DEFAULT_MAX_PIXELS;
    this.maxBatch = opts.maxBatch ?? 64;
    this.decoders = new JobLimiter(Math.max(1, Number(process.env.UV_THREADPOOL_SIZE ?? 4) - 1));
  }

  /** [C, H, W] of one model input. */
  get inputShape(): [number, number, number] {
    const side = preprocessSide(this.info, this.path);
    return [this.info.config.in_chans as number, side, side];
  }

  /**
   * Classifies images: one list of the top `topk` predictions per image, in input order (a
   * [B, C, H, W] tensor contributes B entries). Throws DataError for an image that is not a
   * readable PNG/JPEG/WebP (or is over maxPixels), InputError for a tensor of the wrong shape or
   * with non-finite values; nothing runs unless every input is valid.
   */
  async classify(inputs: ClassifyInput | readonly ClassifyInput[], opts: ClassifyOptions = {}): Promise<Prediction[][]> {
    const k = checkTopk(opts.topk, this.info.classes);
    const images = await this.toBatch(Array.isArray(inputs) ? inputs : [inputs as ClassifyInput]);
    const logits = await this.logits(images);
    const out: Prediction[][] = [];
    for (let r = 0; r < logits.dim(0); r++) out.push(topPredictions(logits.data, logits.dim(1), r, k, this.labels));
    return out;
  }

  /**
   * Raw logits [B, classes] of already-normalized images [B, C, H, W] (checked here), run in
   * forwards of at most maxBatch images.
   */
  async logits(images: Tensor): Promise<Tensor<'F32'>> {
    const x = this.checkTensor(images, 'images');
    const [c, h, w] = this.inputShape;
    const per = c * h * w;
    const B = x.dim(0);
    const classes = this.info.classes;
    if (B <= this.maxBatch) return (await this.engine.forward(x)).logits;
    const out = new Float32Array(B * classes);
    for (let b = 0; b < B; b += this.maxBatch) {
      const n = Math.min(this.maxBatch, B - b);
      const part = new Tensor('F32', [n, c, h, w], x.data.subarray(b * per, (b + n) * per));
      out.set((await this.engine.forward(part)).logits.data, b * classes);
    }
    return new Tensor('F32', [B, classes], out);
  }

  /**
   * One encoded image (PNG, JPEG, WebP) preprocessed for this model: [C, H, W] float32.
   * Throws DataError (its message naming `source`) for anything else or for more than maxPixels.
   */
  async preprocessImage(bytes: Uint8Array, source = 'image'): Promise<Tensor<'F32'>> {
    const out = new Float32Array(this.preprocess.channels * this.preprocess.size * this.preprocess.size);
    await this.decoders.run(() => decodeImageInto(bytes, this.preprocess, out, 0, { maxPixels: this.maxPixels, source }));
    return new Tensor('F32', this.inputShape, out);
  }

  /** Ends the worker; pending and later calls reject with EngineError. Safe to call twice. */
  async dispose(): Promise<void> {
    await this.engine.dispose();
  }

  private async toBatch(inputs: readonly ClassifyInput[]): Promise<Tensor<'F32'>> {
    if (inputs.length === 0) throw new InputError('classify needs at least one image');
    const [c, h, w] = this.inputShape;
    const per = c * h * w;
    // Validate everything before decoding anything: a bad tensor fails fast.
    const counts = inputs.map((x, i) => {
      if (x instanceof Tensor) return this.checkTensor(x.rank === 3 ? x.reshape([1, ...x.shape]) : x, `input ${i}`).dim(0);
      if (x instanceof Uint8Array) {
        if (!sniffImageFormat(x)) throw new DataError(`not a PNG, JPEG or WebP image (${x.length} bytes)`, `input ${i}`);
        return 1;
      }
      throw new InputError(`input ${i} is ${describeValue(x)}, expected image bytes (Uint8Array/Buffer) or a Tensor`);
    });
    const total = counts.reduce((a, b) => a + b, 0);
    const data = new Float32Array(total * per);
    const jobs: Promise<void>[] = [];
    let at = 0;
    inputs.forEach((x, i) => {
      const offset = at * per;
      if (x instanceof Tensor) {
        data.set(x.toFloat32().data, offset);
      } else {
        const bytes = x as Uint8Array;
        jobs.push(this.decoders.run(() => decodeImageInto(bytes, this.preprocess, data, offset, { maxPixels: this.maxPixels, source: `input ${i}` })));
      }
      at += counts[i]!;
    });
    // allSettled: no decode may still be writing into `data` once this call has failed.
    const settled = await Promise.allSettled(jobs);
    const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) throw failed.reason;
    return new Tensor('F32', [total, c, h, w], data);
  }

  private checkTensor(x: Tensor, where: string): Tensor<'F32'> {
    const want = this.inputShape;
    if (x.rank !== 4 || x.dim(0) < 1 || want.some((d, i) => x.dim(i + 1) !== d)) {
      throw new InputError(`${where} has shape ${formatShape(x.shape)}, the model takes [${want.join(', ')}] or [B, ${want.join(', ')}]`);
    }
    if (x.dtype !== 'F32' && x.dtype !== 'F16' && x.dtype !== 'BF16' && x.dtype !== 'F64') {
      throw new InputError(`${where} has dtype ${x.dtype}, expected a float type`);
    }
    const f = x.toFloat32();
    const d = f.data;
    for (let i = 0; i < d.length; i++) {
      if (!Number.isFinite(d[i]!)) throw new InputError(`${where} holds a non-finite value at element ${i}`);
    }
    return f;
  }
}

/**
 * Loads a model: a built-in name (vim-fmnist), a safetensors file (FP or quantized by
 * `ptq4vm calibrate`) or an official PyTorch checkpoint (.pth). Rejects with ModelLoadError,
 * ModelFileError (SafetensorsError, PthError) or EngineError, each with a one-line message.
 */
export async function loadModel(pathOrName: string, opts: LoadModelOptions = {}): Promise<Model> {
  if (opts.maxBatch !== undefined && !(Number.isInteger(opts.maxBatch) && opts.maxBatch >= 1)) {
    throw new InputError(`maxBatch must be a positive integer, got ${opts.maxBatch}`);
  }
  if (opts.maxPixels !== undefined && !(Number.isInteger(opts.maxPixels) && opts.maxPixels >= 1)) {
    throw new InputError(`maxPixels must be a positive integer, got ${opts.maxPixels}`);
  }
  const path = resolveModelPath(pathOrName);
  const metadata = await modelMetadata(path);
  const engine = await InferenceEngine.start({
    model: path, device: opts.device, precision: opts.precision, imgSize: opts.imgSize, threads: opts.threads,
  });
  try {
    const info = engine.info;
    const config = { in_chans: info.config.in_chans as number, img_size: preprocessSide(info, path) };
    const preprocess = preprocessFromModel(config, metadata, path);
    const builtin = Object.hasOwn(BUILTIN_MODELS, pathOrName) ? pathOrName : undefined;
    return new Model(engine, path, preprocess, modelLabels(info, metadata, builtin), opts);
  } catch (e) {
    await engine.dispose();
    throw e;
  }
}

/**
 * `__metadata__` of a safetensors model (header only; the worker reads the tensors). A .pth has
 * none, so its images get the ImageNet defaults.
 */
async function modelMetadata(path: string): Promise<Record<string, string>> {
  if (/\.(pth|pt)$/i.test(path)) return {};
  return (await readSafetensorsHeader(path)).metadata;
}

/** Class names: the metadata's `labels` (one string per class), else Fashion-MNIST's for Fashion-MNIST models. */
function modelLabels(info: ModelInfo, metadata: Record<string, string>, builtin: string | undefined): readonly string[] | null {
  const l = info.labels;
  if (Array.isArray(l) && l.length === info.classes && l.every((s) => typeof s === 'string')) return Object.freeze([...l]);
  const dataset = metadata.dataset?.toLowerCase();
  const fmnist = builtin === 'vim-fmnist' || dataset === 'fmnist' || dataset === 'fashion-mnist' || dataset === 'fashion_mnist';
  return fmnist && info.classes === FASHION_MNIST_CLASSES.length ? FASHION_MNIST_CLASSES : null;
}

/**
 * The k most probable classes of row r of logits [rows, cols], best first: softmax computed in
 * float64 over the whole row (max subtracted), ties broken by the lower class index.
 */
export function topPredictions(logits: Float32Array, cols: number, r: number, k: number, labels: readonly string[] | null): Prediction[] {
  const row = logits.subarray(r * cols, (r + 1) * cols);
  let max = -Infinity;
  for (let c = 0; c < cols; c++) if (row[c]! > max) max = row[c]!;
  let sum = 0;
  for (let c = 0; c < cols; c++) sum += Math.exp(row[c]! - max);
  const best: number[] = [];
  for (let c = 0; c < cols; c++) {
    let i = best.length;
    while (i > 0 && row[best[i - 1]!]! < row[c]!) i--;
    if (i < k) {
      best.splice(i, 0, c);
      if (best.length > k) best.pop();
    }
  }
  return best.map((c) => ({ class: c, label: labels?.[c] ?? null, prob: Math.exp(row[c]! - max) / sum }));
}

/** topk option → a count in [1, classes]. */
export function checkTopk(topk: number | undefined, classes: number): number {
  if (topk === undefined) return Math.min(DEFAULT_TOPK, classes);
  if (!Number.isInteger(topk) || topk < 1) throw new InputError(`topk must be a positive integer, got ${topk}`);
  return Math.min(topk, classes);
}

function describeValue(x: unknown): string {
  if (x === null) return 'null';
  if (typeof x !== 'object') return `of type ${typeof x}`;
  return `of type ${(x as object).constructor?.name ?? 'object'}`;
}

export { EngineError };
