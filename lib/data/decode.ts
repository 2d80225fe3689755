import sharp, { type Metadata, type OutputInfo } from 'sharp';
import { Tensor } from '../tensor/tensor.js';
import { DataError, describeError } from './errors.js';
import { normalizeTable, resizeGeometry, writeNormalized, type Preprocess } from './preprocess.js';
import { resizeCropBicubic, toLuma } from './resample.js';

/**
 * Decoding and the resize/crop step, on sharp (libvips). Each call runs on libuv's thread pool,
 * so several images decode in parallel while JavaScript (and the model) keep running.
 *
 * Fidelity to the PIL reference (timm's transform on PIL images):
 * - Shrinking uses libvips's "cubic" kernel, Catmull-Rom (a = −0.5) widened by the scale factor,
 *   as PIL's BICUBIC; libvips's fixed point, tap placement and, for factors ≥ 4, its integer box
 *   pre-shrink differ from PIL (Pillow 9.4, measured on photograph-like 333×257 to 2000×1500
 *   test images): mean |Δ| 0.2–0.6 u8 levels, max 1–3; on pure noise max 18. `exactResize`
 *   swaps in this package's resampler, which matched Pillow exactly on all of them.
 * - Enlarging (images whose shorter side is below `resize`) always uses the PIL-exact resampler:
 *   libvips's enlargement differs by up to ~16 levels.
 * - JPEG shrink-on-load (DCT-domain downscaling) is avoided, as PIL decodes at full size.
 * - Embedded ICC profiles are ignored and EXIF orientation is not applied, as with PIL's
 *   Image.open(...).convert('RGB'). Known differences: CMYK JPEGs go through libvips's CMYK
 *   profile (PIL inverts naively), and 16-bit PNGs are scaled to 8 bits (PIL clips them).
 * - Alpha is dropped before resizing (as convert('RGB') does), never premultiplied.
 * - For 1-channel models a colour image becomes PIL's "L" luma; when libvips shrinks it, after
 *   the resize rather than before (±1 level).
 */

export type ImageFormat = 'jpeg' | 'png' | 'webp';

export interface DecodeOptions {
  /** Largest decoded width·height accepted; larger images are refused before decoding (decompression bombs). */
  maxPixels?: number;
  /** Names the image in errors (a file path); defaults to "image". */
  source?: string;
  /**
   * Resize with this package's PIL-exact resampler (resample.ts) instead of libvips when shrinking
   * too: pixel-identical to PIL, but it costs ≈ 6 ms of the JS thread per 500×375 image, where
   * libvips's whole decode + resize takes ≈ 4 ms on its own threads.
   */
  exactResize?: boolean;
}

/** sharp's own default limit (0x3FFF²), used when no maxPixels is given. */
export const DEFAULT_MAX_PIXELS = 0x3fff * 0x3fff;

/** The image format from the first bytes, or undefined for anything but JPEG, PNG and WebP. */
export function sniffImageFormat(buf: Uint8Array): ImageFormat | undefined {
  if (buf.length >= 3 && buf[0] === 0xff && buf[1] === 0xd8 && buf[2] === 0xff) return 'jpeg';
  if (buf.length >= 8 && buf[0] === 0x89 && buf[1] === 0x50 && buf[2] === 0x4e && buf[3] === 0x47 &&
      buf[4] === 0x0d && buf[5] === 0x0a && buf[6] === 0x1a && buf[7] === 0x0a) return 'png';
  if (buf.length >= 12 && ascii(buf, 0, 4) === 'RIFF' && ascii(buf, 8, 12) === 'WEBP') return 'webp';
  return undefined;
}

function ascii(buf: Uint8Array, from: number, to: number): string {
  return String.fromCharCode(...buf.subarray(from, to));
}

/** Preprocess tables are cached per Preprocess object: they are small and reused for every image. */
const tableCache = new WeakMap<Preprocess, Float32Array[]>();
export function tablesFor(p: Preprocess): Float32Array[] {
  let t = tableCache.get(p);
  if (!t) {
    t = normalizeTable(p);
    tableCache.set(p, t);
  }
  return t;
}

/**
 * Decodes one PNG/JPEG/WebP image and writes it preprocessed, [C, size, size] float32, at
 * out[offset…]. Throws DataError (naming opts.source) for anything that is not such an image,
 * is corrupt or truncated, or has more than maxPixels pixels.
 */
export async function decodeImageInto(buf: Uint8Array, p: Preprocess, out: Float32Array, offset: number, opts: DecodeOptions = {}): Promise<void> {
  const source = opts.source ?? 'image';
  const maxPixels = opts.maxPixels ?? DEFAULT_MAX_PIXELS;
  const format = sniffImageFormat(buf);
  if (!format) throw new DataError(`not a PNG, JPEG or WebP image (${buf.length} bytes, starting ${hexStart(buf)})`, source);
  const input = { failOn: 'error' as const, limitInputPixels: maxPixels, ignoreIcc: true, autoOrient: false };

  let meta: Metadata;
  try {
    // Header only: no pixel limit here, so an oversized image gets the clearer message below.
    meta = await sharp(buf, { ...input, limitInputPixels: false }).metadata();
  } catch (e) {
    throw new DataError(`cannot read ${format.toUpperCase()} header: ${describeError(e)}`, source, { cause: e });
  }
  const width = meta.width;
  const height = meta.height;
  if (!width || !height) throw new DataError(`${format.toUpperCase()} image has no size`, source);
  if (width * height > maxPixels) {
    throw new DataError(`image is ${width}×${height} = ${width * height} pixels, over the limit of ${maxPixels}`, source);
  }
  const g = resizeGeometry(width, height, p);
  const crop = { left: g.left, top: g.top, width: p.size, height: p.size };
  const needsResize = g.resizeWidth !== width || g.resizeHeight !== height;
  const resize = { width: g.resizeWidth, height: g.resizeHeight, fit: 'fill' as const, kernel: 'cubic' as const, fastShrinkOnLoad: false };

  // libvips enlarges unlike PIL (see resample.ts), so enlarging always resamples here.
  const resampleHere = needsResize && (opts.exactResize === true || g.resizeWidth > width || g.resizeHeight > height);

  let pixels: Uint8Array;
  let channels: number;
  try {
    if (resampleHere || (meta.hasAlpha && needsResize)) {
      // Decode at full size, alpha dropped (sharp would premultiply around a resize; PIL drops it).
      const flat = await sharp(buf, input).removeAlpha().raw().toBuffer({ resolveWithObject: true });
      const raw = { width: flat.info.width, height: flat.info.height, channels: flat.info.channels };
      if (raw.width !== width || raw.height !== height) throw new Error(`decoded ${raw.width}×${raw.height}, header says ${width}×${height}`);
      if (resampleHere) {
        // Gray conversion before resizing, in PIL's order.
        let src: Uint8Array = flat.data;
        channels = raw.channels;
        if (p.channels === 1 && channels >= 3) {
          src = toLuma(src, width * height, channels);
          channels = 1;
        }
        pixels = resizeCropBicubic(src, width, height, channels, g, p.size);
      } else {
        const r = await sharp(flat.data, { raw }).resize(resize).extract(crop).raw().toBuffer({ resolveWithObject: true });
        checkOutput(r.info, r.data, p.size, source);
        pixels = r.data;
        channels = r.info.channels;
      }
    } else {
      let img = sharp(buf, input);
      // A full-frame extract before the resize stops JPEG shrink-on-load (DCT downscaling).
      if (needsResize) img = img.extract({ left: 0, top: 0, width, height }).resize(resize);
      const r = await img.extract(crop).removeAlpha().raw().toBuffer({ resolveWithObject: true });
      checkOutput(r.info, r.data, p.size, source);
      pixels = r.data;
      channels = r.info.channels;
    }
  } catch (e) {
    if (e instanceof DataError) throw e;
    throw new DataError(`corrupt or unreadable ${format.toUpperCase()} image: ${describeError(e)}`, source, { cause: e });
  }
  writeNormalized(pixels, p.size, p.size, channels, tablesFor(p), out, offset);
}

/**
 * One PNG/JPEG/WebP image buffer, preprocessed for the model: a [C, size, size] float32 tensor
 * (reshape to [1, C, size, size] for a batch of one). For servers: pass maxPixels to bound the
 * memory an upload can make the decoder allocate.
 */
export async function preprocessImageBuffer(buf: Uint8Array, p: Preprocess, opts: DecodeOptions = {}): Promise<Tensor<'F32'>> {
  const out = new Float32Array(p.channels * p.size * p.size);
  await decodeImageInto(buf, p, out, 0, opts);
  return new Tensor('F32', [p.channels, p.size, p.size], out);
}

function checkOutput(info: OutputInfo, data: Uint8Array, size: number, source: string): void {
  if (info.width !== size || info.height !== size || data.length !== size * size * info.channels) {
    throw new DataError(`decoder returned ${info.width}×${info.height}×${info.channels} pixels, expected ${size}×${size}`, source);
  }
}

function hexStart(buf: Uint8Array): string {
  return buf.length === 0 ? 'empty' : Buffer.from(buf.subarray(0, 4)).toString('hex');
}
