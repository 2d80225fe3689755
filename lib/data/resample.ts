import type { ResizeGeometry } from './preprocess.js';

/*
 * Bicubic resampling with PIL's semantics (Image.resize(..., BICUBIC) on 8-bit images), used
 * where libvips strays from it: libvips enlarges with an affine interpolator whose edge handling
 * and rounding differ from PIL's by up to ~16 levels, while PIL enlarges with the same separable
 * convolution as when it shrinks. PIL's rules, reproduced here:
 * - output pixel i of an axis is centred on input coordinate (i + 0.5)·scale, scale = in/out;
 * - Catmull-Rom kernel (a = −0.5) stretched by max(scale, 1), taps clipped to the image and the
 *   weights renormalized to sum 1;
 * - weights in 22-bit fixed point, each pass rounded and clamped to u8, horizontal pass first.
 */

const PRECISION_BITS = 22;
const ONE = 2 ** PRECISION_BITS;
const HALF = 2 ** (PRECISION_BITS - 1);

function cubic(x: number): number {
  const a = -0.5;
  if (x < 0) x = -x;
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

/** Taps of output pixels [first, first + count) of an axis resized from inSize to outSize. */
interface AxisTaps {
  start: Int32Array;
  len: Int32Array;
  /** Fixed-point weights, `stride` slots per output pixel. */
  weights: Float64Array;
  stride: number;
}

function axisTaps(inSize: number, outSize: number, first: number, count: number): AxisTaps {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = 2 * filterScale;
  const stride = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(count);
  const len = new Int32Array(count);
  const weights = new Float64Array(count * stride);
  const w = new Float64Array(stride);
  for (let o = 0; o < count; o++) {
    const center = (first + o + 0.5) * scale;
    // PIL truncates these with a C cast; both are clamped right after, so trunc = floor here.
    const lo = Math.max(0, Math.trunc(center - support + 0.5));
    const hi = Math.min(inSize, Math.trunc(center + support + 0.5));
    let sum = 0;
    for (let k = 0; k < hi - lo; k++) {
      w[k] = cubic((k + lo - center + 0.5) / filterScale);
      sum += w[k]!;
    }
    for (let k = 0; k < hi - lo; k++) {
      const v = sum === 0 ? w[k]! : w[k]! / sum;
      weights[o * stride + k] = v < 0 ? Math.trunc(-0.5 + v * ONE) : Math.trunc(0.5 + v * ONE);
    }
    start[o] = lo;
    len[o] = hi - lo;
  }
  return { start, len, weights, stride };
}

function clampU8(acc: number): number {
  const v = Math.floor(acc / ONE);
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

/**
 * Resizes interleaved u8 pixels (width×height×channels) to g.resizeWidth×g.resizeHeight and
 * returns the size×size crop at (g.left, g.top), computing only the pixels the crop needs
 * (the values are those of the full resize).
 */
export function resizeCropBicubic(src: Uint8Array, width: number, height: number, channels: number, g: ResizeGeometry, size: number): Uint8Array {
  const needH = g.resizeWidth !== width;
  const needV = g.resizeHeight !== height;
  // Horizontal pass over the input rows the vertical pass will read.
  const vt = needV ? axisTaps(height, g.resizeHeight, g.top, size) : undefined;
  const rowLo = vt ? vt.start[0]! : g.top;
  const rowHi = vt ? vt.start[size - 1]! + vt.len[size - 1]! : g.top + size;
  const rows = rowHi - rowLo;
  let mid: Uint8Array;
  if (needH) {
    const ht = axisTaps(width, g.resizeWidth, g.left, size);
    mid = new Uint8Array(rows * size * channels);
    for (let y = 0; y < rows; y++) {
      const rowBase = (rowLo + y) * width * channels;
      for (let x = 0; x < size; x++) {
        const s = ht.start[x]!;
        const n = ht.len[x]!;
        const wBase = x * ht.stride;
        for (let c = 0; c < channels; c++) {
          let acc = HALF;
          for (let k = 0; k < n; k++) acc += src[rowBase + (s + k) * channels + c]! * ht.weights[wBase + k]!;
          mid[(y * size + x) * channels + c] = clampU8(acc);
        }
      }
    }
  } else {
    mid = new Uint8Array(rows * size * channels);
    for (let y = 0; y < rows; y++) {
      const from = ((rowLo + y) * width + g.left) * channels;
      mid.set(src.subarray(from, from + size * channels), y * size * channels);
    }
  }
  if (!vt) return mid;
  const out = new Uint8Array(size * size * channels);
  const rowStride = size * channels;
  for (let y = 0; y < size; y++) {
    const s = vt.start[y]! - rowLo;
    const n = vt.len[y]!;
    const wBase = y * vt.stride;
    for (let i = 0; i < rowStride; i++) {
      let acc = HALF;
      for (let k = 0; k < n; k++) acc += mid[(s + k) * rowStride + i]! * vt.weights[wBase + k]!;
      out[y * rowStride + i] = clampU8(acc);
    }
  }
  return out;
}

/** PIL's RGB → "L" conversion (ITU-R 601-2 luma in 16-bit fixed point) of interleaved pixels with ≥ 3 channels. */
export function toLuma(src: Uint8Array, pixels: number, channels: number): Uint8Array {
  const out = new Uint8Array(pixels);
  for (let i = 0, j = 0; i < pixels; i++, j += channels) {
    out[i] = (src[j]! * 19595 + src[j + 1]! * 38470 + src[j + 2]! * 7471 + 0x8000) >>> 16;
  }
  return out;
}
