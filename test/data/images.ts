// Test utilities: synthetic images, encoders, and an independent float bicubic reference.
import sharp from 'sharp';

export type Format = 'png' | 'jpeg' | 'webp';

/** Interleaved u8 pixels from f(x, y, c) (values are rounded and clamped). */
export function makePixels(width: number, height: number, channels: number, f: (x: number, y: number, c: number) => number): Uint8Array {
  const out = new Uint8Array(width * height * channels);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < channels; c++) out[(y * width + x) * channels + c] = Math.max(0, Math.min(255, Math.round(f(x, y, c))));
    }
  }
  return out;
}

/** A smooth, photograph-like pattern (sines and a soft edge); different per channel. */
export function smooth(width: number, height: number, channels: number, seed = 1): Uint8Array {
  return makePixels(width, height, channels, (x, y, c) => {
    const k = seed + c;
    return 128 + 70 * Math.sin((x * (0.11 + 0.03 * k)) + y * 0.07 * k) + 40 * Math.cos(y * (0.09 + 0.02 * c) - x * 0.05) +
      15 * Math.tanh((x - width / 2) / 3);
  });
}

/** Hard-edged blocks (cw×ch cells, two levels, offset per channel): sharp edges tell resize kernels apart. */
export function blocks(width: number, height: number, channels: number, cw: number, ch: number): Uint8Array {
  return makePixels(width, height, channels, (x, y, c) => ((Math.floor(x / cw) + Math.floor(y / ch) + c) % 2) * 180 + 40);
}

/** Encodes interleaved pixels losslessly (PNG, lossless WebP) or as a high-quality JPEG. */
export async function encode(pixels: Uint8Array, width: number, height: number, channels: 1 | 2 | 3 | 4, format: Format): Promise<Buffer> {
  const img = sharp(Buffer.from(pixels), { raw: { width, height, channels } });
  if (format === 'png') return img.png().toBuffer();
  if (format === 'webp') return img.webp({ lossless: true }).toBuffer();
  return img.jpeg({ quality: 95, chromaSubsampling: '4:4:4' }).toBuffer();
}

function catmullRom(x: number): number {
  x = Math.abs(x);
  if (x < 1) return (1.5 * x - 2.5) * x * x + 1;
  if (x < 2) return ((-0.5 * x + 2.5) * x - 4) * x + 2;
  return 0;
}

/**
 * Float reference of PIL-style bicubic resize along one axis (antialiased when shrinking,
 * taps clipped to the image and renormalized), with no fixed point and no rounding.
 */
function resizeAxis(src: Float64Array, len: number, count: number, outLen: number): Float64Array {
  // src holds `count` contiguous lines of `len` samples each.
  const out = new Float64Array(count * outLen);
  const scale = len / outLen;
  const fs = Math.max(scale, 1);
  for (let o = 0; o < outLen; o++) {
    const center = (o + 0.5) * scale;
    const lo = Math.max(0, Math.floor(center - 2 * fs + 0.5));
    const hi = Math.min(len, Math.floor(center + 2 * fs + 0.5));
    const w: number[] = [];
    let sum = 0;
    for (let i = lo; i < hi; i++) {
      const v = catmullRom((i + 0.5 - center) / fs);
      w.push(v);
      sum += v;
    }
    for (let j = 0; j < count; j++) {
      let acc = 0;
      for (let i = lo; i < hi; i++) acc += src[j * len + i]! * w[i - lo]!;
      out[j * outLen + o] = acc / sum;
    }
  }
  return out;
}

/** Resizes one channel plane (height×width, row-major) to outW×outH in float. */
export function bicubicPlane(plane: Float64Array, width: number, height: number, outW: number, outH: number): Float64Array {
  const h = resizeAxis(plane, width, height, outW); // each row: width → outW
  // Columns: transpose, resize the rows, transpose back.
  const t = new Float64Array(outW * height);
  for (let y = 0; y < height; y++) for (let x = 0; x < outW; x++) t[x * height + y] = h[y * outW + x]!;
  const v = resizeAxis(t, height, outW, outH);
  const out = new Float64Array(outW * outH);
  for (let x = 0; x < outW; x++) for (let y = 0; y < outH; y++) out[y * outW + x] = v[x * outH + y]!;
  return out;
}

/** Channel c of interleaved pixels as a float plane. */
export function plane(pixels: Uint8Array, width: number, height: number, channels: number, c: number): Float64Array {
  const p = new Float64Array(width * height);
  for (let i = 0; i < width * height; i++) p[i] = pixels[i * channels + c]!;
  return p;
}
