import { DataError } from './errors.js';

/**
 * How an image becomes model input: the Vim/timm evaluation transform
 * Resize(resize, bicubic) → CenterCrop(size) → ToTensor → Normalize(mean, std),
 * with the image converted to grayscale (1 channel) or RGB (3 channels) first.
 */
export interface Preprocess {
  /** 1 (grayscale, PIL "L") or 3 (RGB; alpha dropped, grayscale repeated). */
  readonly channels: 1 | 3;
  /** Side of the square model input (the model's img_size). */
  readonly size: number;
  /** The shorter side is resized to this before the centre crop; ≥ size. Decoded images only: idx data is never resized. */
  readonly resize: number;
  /** Per-channel mean and std of Normalize, `channels` values each. */
  readonly mean: readonly number[];
  readonly std: readonly number[];
}

export const IMAGENET_MEAN: readonly number[] = Object.freeze([0.485, 0.456, 0.406]);
export const IMAGENET_STD: readonly number[] = Object.freeze([0.229, 0.224, 0.225]);
/** timm's default eval crop fraction: resize = floor(size / 0.875), 256 for 224. */
export const DEFAULT_CROP_PCT = 0.875;

/** Data sets whose images are stored at the model's size: their models see them uncropped. */
const NATIVE_SIZE_DATASETS = new Set(['mnist', 'fmnist', 'fashion-mnist', 'fashion_mnist']);

/** What preprocessFromModel reads of a model config. */
export interface ModelInputConfig {
  img_size: number;
  in_chans: number;
}

/**
 * The preprocessing a model expects, from its config and `__metadata__`:
 * - mean/std: `normalize` JSON `{"mean": [...], "std": [...]}` (one value or one per channel),
 *   else ImageNet's (for a 1-channel model: the average of ImageNet's three values);
 * - resize: `crop_pct` (number) → floor(size / crop_pct); else size itself for models trained on
 *   fixed-size data sets (`dataset` = fmnist/mnist), else floor(size / 0.875) as the Vim code
 *   computes it (int(input_size / eval_crop_ratio)).
 * `where` names the model file in errors.
 */
export function preprocessFromModel(config: ModelInputConfig, metadata: Readonly<Record<string, string>> = {}, where = 'model'): Preprocess {
  const channels = config.in_chans;
  if (channels !== 1 && channels !== 3) {
    throw new DataError(`in_chans = ${channels}: image preprocessing supports 1 (grayscale) or 3 (RGB) channel models`, where);
  }
  let mean: readonly number[];
  let std: readonly number[];
  const norm = metadata.normalize;
  if (norm !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(norm);
    } catch {
      throw new DataError('__metadata__.normalize is not valid JSON', where);
    }
    const o = (typeof parsed === 'object' && parsed !== null ? parsed : {}) as Record<string, unknown>;
    mean = perChannel(o.mean, channels, 'normalize.mean', where);
    std = perChannel(o.std, channels, 'normalize.std', where);
  } else if (channels === 3) {
    mean = IMAGENET_MEAN;
    std = IMAGENET_STD;
  } else {
    mean = [average(IMAGENET_MEAN)];
    std = [average(IMAGENET_STD)];
  }
  const size = config.img_size;
  let resize: number;
  if (metadata.crop_pct !== undefined) {
    const pct = Number(metadata.crop_pct);
    if (!(pct > 0 && pct <= 1)) throw new DataError(`__metadata__.crop_pct must be a number in (0, 1], got ${JSON.stringify(metadata.crop_pct)}`, where);
    resize = Math.floor(size / pct);
  } else if (metadata.dataset !== undefined && NATIVE_SIZE_DATASETS.has(metadata.dataset.toLowerCase())) {
    resize = size;
  } else {
    resize = Math.floor(size / DEFAULT_CROP_PCT);
  }
  return makePreprocess({ channels, size, resize, mean, std }, where);
}

/** Validates a Preprocess (mean/std of one value are repeated per channel); `where` names its source in errors. */
export function makePreprocess(p: { channels: number; size: number; resize?: number; mean: readonly number[]; std: readonly number[] }, where = 'preprocess'): Preprocess {
  if (p.channels !== 1 && p.channels !== 3) throw new DataError(`channels must be 1 or 3, got ${p.channels}`, where);
  if (!Number.isInteger(p.size) || p.size < 1 || p.size > 8192) throw new DataError(`size must be an integer in [1, 8192], got ${p.size}`, where);
  const resize = p.resize ?? Math.floor(p.size / DEFAULT_CROP_PCT);
  if (!Number.isInteger(resize) || resize < p.size || resize > 65536) {
    throw new DataError(`resize must be an integer in [size = ${p.size}, 65536], got ${resize}`, where);
  }
  const mean = perChannel(p.mean, p.channels, 'mean', where);
  const std = perChannel(p.std, p.channels, 'std', where);
  if (std.some((s) => !(s > 0))) throw new DataError(`std must be positive, got [${std.join(', ')}]`, where);
  return Object.freeze({ channels: p.channels, size: p.size, resize, mean, std });
}

function perChannel(v: unknown, channels: number, what: string, where: string): readonly number[] {
  if (!Array.isArray(v) || (v.length !== 1 && v.length !== channels) || !v.every((x) => typeof x === 'number' && Number.isFinite(x))) {
    throw new DataError(`${what} must be an array of 1 or ${channels} finite numbers, got ${JSON.stringify(v)}`, where);
  }
  return Object.freeze(v.length === channels ? [...(v as number[])] : new Array<number>(channels).fill(v[0] as number));
}

function average(v: readonly number[]): number {
  return v.reduce((a, b) => a + b, 0) / v.length;
}

/** Where an image of width×height lands: the resized size and the crop's top-left corner. */
export interface ResizeGeometry {
  resizeWidth: number;
  resizeHeight: number;
  left: number;
  top: number;
}

/**
 * torchvision's Resize(int) then CenterCrop: the shorter side becomes `resize`, the longer
 * int(resize·long/short) (truncated, as Python's int()); the crop offset is round((side − size)/2)
 * with Python's round-half-to-even.
 */
export function resizeGeometry(width: number, height: number, p: Pick<Preprocess, 'size' | 'resize'>): ResizeGeometry {
  let resizeWidth: number;
  let resizeHeight: number;
  if (width <= height) {
    resizeWidth = p.resize;
    resizeHeight = Math.trunc((p.resize * height) / width);
  } else {
    resizeHeight = p.resize;
    resizeWidth = Math.trunc((p.resize * width) / height);
  }
  return {
    resizeWidth,
    resizeHeight,
    left: roundHalfEven((resizeWidth - p.size) / 2),
    top: roundHalfEven((resizeHeight - p.size) / 2),
  };
}

export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return (r - x === 0.5 && r % 2 !== 0 ? r - 1 : r) + 0; // + 0 turns −0 into 0
}

/**
 * For each channel, the 256 normalized values of a u8 pixel, computed as torchvision does in
 * float32: x = v/255, then (x − mean)/std, each step rounded to float32.
 */
export function normalizeTable(p: Preprocess): Float32Array[] {
  const tables: Float32Array[] = [];
  for (let c = 0; c < p.channels; c++) {
    const m = Math.fround(p.mean[c]!);
    const s = Math.fround(p.std[c]!);
    const t = new Float32Array(256);
    for (let v = 0; v < 256; v++) t[v] = Math.fround(Math.fround(Math.fround(v / 255) - m) / s);
    tables.push(t);
  }
  return tables;
}

/**
 * Writes interleaved u8 pixels (width·height·srcChannels; 1 = gray, 2 = gray+alpha, 3 = RGB,
 * 4 = RGBA) as planar normalized float32 [C, height, width] at out[offset…]. Alpha is dropped;
 * RGB → gray uses PIL's "L" conversion (ITU-R 601-2 luma, 16-bit fixed point, rounded).
 */
export function writeNormalized(
  pixels: Uint8Array, width: number, height: number, srcChannels: number,
  tables: readonly Float32Array[], out: Float32Array, offset: number,
): void {
  const n = width * height;
  const channels = tables.length;
  if (srcChannels < 1 || srcChannels > 4) throw new RangeError(`unsupported pixel layout with ${srcChannels} channels`);
  if (pixels.length < n * srcChannels) throw new RangeError(`pixel buffer has ${pixels.length} bytes, ${width}×${height}×${srcChannels} needs ${n * srcChannels}`);
  const gray = srcChannels <= 2;
  if (channels === 1) {
    const t = tables[0]!;
    if (gray) {
      for (let i = 0; i < n; i++) out[offset + i] = t[pixels[i * srcChannels]!]!;
    } else {
      for (let i = 0, j = 0; i < n; i++, j += srcChannels) {
        const l = (pixels[j]! * 19595 + pixels[j + 1]! * 38470 + pixels[j + 2]! * 7471 + 0x8000) >>> 16;
        out[offset + i] = t[l]!;
      }
    }
    return;
  }
  for (let c = 0; c < channels; c++) {
    const t = tables[c]!;
    const base = offset + c * n;
    const src = gray ? 0 : c;
    for (let i = 0, j = src; i < n; i++, j += srcChannels) out[base + i] = t[pixels[j]!]!;
  }
}
