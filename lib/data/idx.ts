import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';
import { Tensor } from '../tensor/tensor.js';
import { pipelineBatches, resolveBatchOptions, type Batch, type BatchOptions, type Dataset } from './dataset.js';
import { DataError, describeError } from './errors.js';
import { tablesFor } from './decode.js';
import type { Preprocess } from './preprocess.js';

/*
 * The MNIST idx format: big-endian, a 4-byte magic 0x00 0x00 <type> <rank>, one u32 per dimension,
 * then the data. Images are type 0x08 (u8) rank 3 [n, rows, cols]; labels u8 rank 1 [n].
 * Files may be gzip-compressed (detected by content, not by name).
 */

const gunzipAsync = promisify(gunzip);
/** Refuse to inflate more than this (a bomb, or not an idx file). */
const MAX_IDX_BYTES = 2 ** 31 - 1;

export interface IdxImages {
  count: number;
  rows: number;
  cols: number;
  /** count·rows·cols u8 pixels, row-major, image after image. */
  pixels: Uint8Array;
}

/** Reads a file and inflates it when it is gzip (raw otherwise). */
async function readMaybeGzip(path: string): Promise<Uint8Array> {
  let buf: Buffer;
  try {
    buf = await readFile(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new DataError(code === 'ENOENT' ? 'no such file' : `cannot read: ${describeError(e)}`, path, { cause: e });
  }
  if (buf.length >= 2 && buf[0] === 0x1f && buf[1] === 0x8b) {
    try {
      return await gunzipAsync(buf, { maxOutputLength: MAX_IDX_BYTES });
    } catch (e) {
      const code = (e as { code?: string }).code;
      const why = code === 'Z_BUF_ERROR' ? 'truncated gzip data (unexpected end of file)' : `corrupt gzip data: ${describeError(e)}`;
      throw new DataError(why, path, { cause: e });
    }
  }
  return buf;
}

function parseHeader(buf: Uint8Array, path: string, rank: number, what: string): number[] {
  const headerBytes = 4 + 4 * rank;
  if (buf.length < headerBytes) throw new DataError(`too short for an idx ${what} file (${buf.length} bytes)`, path);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const magic = view.getUint32(0);
  const expected = 0x0800 | rank;
  if (magic !== expected) {
    throw new DataError(`not an idx ${what} file: magic 0x${magic.toString(16).padStart(8, '0')}, expected 0x${expected.toString(16).padStart(8, '0')} (u8, ${rank} dimension${rank > 1 ? 's' : ''})`, path);
  }
  const dims: number[] = [];
  for (let i = 0; i < rank; i++) dims.push(view.getUint32(4 + 4 * i));
  const body = dims.reduce((a, b) => a * b, 1);
  if (dims.some((d) => d === 0)) throw new DataError(`idx ${what} file has a zero dimension [${dims.join(', ')}]`, path);
  if (buf.length !== headerBytes + body) {
    const how = buf.length < headerBytes + body ? 'truncated' : 'has trailing bytes';
    throw new DataError(`idx ${what} file ${how}: dimensions [${dims.join(', ')}] need ${headerBytes + body} bytes, found ${buf.length}`, path);
  }
  return dims;
}

export async function readIdxImages(path: string): Promise<IdxImages> {
  const buf = await readMaybeGzip(path);
  const [count, rows, cols] = parseHeader(buf, path, 3, 'images') as [number, number, number];
  return { count, rows, cols, pixels: buf.subarray(16) };
}

export async function readIdxLabels(path: string): Promise<Uint8Array> {
  const buf = await readMaybeGzip(path);
  parseHeader(buf, path, 1, 'labels');
  return buf.subarray(8);
}

/**
 * The labels file of an images file: its name with `images-idx3` replaced by `labels-idx1`; when
 * that does not exist, the same name with ".gz" added or removed.
 */
export function idxLabelsPath(imagesPath: string): string {
  const name = basename(imagesPath);
  if (!name.includes('images-idx3')) {
    throw new DataError(`cannot find the labels file: an idx images file name must contain "images-idx3" (its labels file has "labels-idx1" instead)`, imagesPath);
  }
  const labels = join(dirname(imagesPath), name.replace('images-idx3', 'labels-idx1'));
  if (existsSync(labels)) return labels;
  const other = labels.endsWith('.gz') ? labels.slice(0, -3) : labels + '.gz';
  if (existsSync(other)) return other;
  throw new DataError(`missing labels file ${labels}`, imagesPath);
}

/** An MNIST-style idx data set, held in memory (60,000 28×28 images are 47 MB). */
export class IdxDataset implements Dataset {
  readonly kind = 'idx' as const;
  readonly labeled = true;
  readonly classNames: readonly string[];

  private constructor(
    readonly source: string,
    readonly labelsSource: string,
    private readonly images: IdxImages,
    private readonly labels: Uint8Array,
    classNames?: readonly string[],
  ) {
    let maxLabel = 0;
    for (const l of labels) if (l > maxLabel) maxLabel = l;
    if (classNames && classNames.length <= maxLabel) {
      throw new DataError(`label ${maxLabel} found but only ${classNames.length} class names are known`, labelsSource);
    }
    this.classNames = Object.freeze(classNames ? [...classNames] : Array.from({ length: maxLabel + 1 }, (_, i) => String(i)));
  }

  /** Reads an images file and its labels file (see idxLabelsPath). `classNames` names the label values. */
  static async open(imagesPath: string, opts: { classNames?: readonly string[] } = {}): Promise<IdxDataset> {
    const labelsPath = idxLabelsPath(imagesPath);
    const [images, labels] = await Promise.all([readIdxImages(imagesPath), readIdxLabels(labelsPath)]);
    if (labels.length !== images.count) {
      throw new DataError(`${labels.length} labels in ${labelsPath} for ${images.count} images`, imagesPath);
    }
    return new IdxDataset(imagesPath, labelsPath, images, labels, opts.classNames);
  }

  get length(): number {
    return this.images.count;
  }

  get rows(): number {
    return this.images.rows;
  }

  get cols(): number {
    return this.images.cols;
  }

  get description(): string {
    return `idx ${this.source}: ${this.length} ${this.rows}×${this.cols} grayscale images, ${this.classNames.length} classes`;
  }

  /** Label of image i. */
  label(i: number): number {
    return this.labels[i]!;
  }

  checkPreprocess(p: Preprocess): void {
    const { rows, cols } = this.images;
    if (p.channels !== 1 || p.size !== rows || p.size !== cols) {
      throw new DataError(
        `holds ${rows}×${cols} grayscale images; the model takes ${p.size}×${p.size} with ${p.channels} channel${p.channels > 1 ? 's' : ''} (idx data is not resized)`,
        this.source,
      );
    }
  }

  /** Pixels/255 normalized, no resize (the model's size must be the images'). */
  batches(opts: BatchOptions): AsyncGenerator<Batch, void, undefined> {
    const o = resolveBatchOptions(opts, this.length);
    this.checkPreprocess(o.preprocess);
    const table = tablesFor(o.preprocess)[0]!;
    const per = this.rows * this.cols;
    const { pixels } = this.images;
    const make = async (start: number, end: number): Promise<Batch> => {
      const n = end - start;
      const data = new Float32Array(n * per);
      const indices = new Int32Array(n);
      const labels = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        const index = o.order(start + i);
        indices[i] = index;
        labels[i] = this.labels[index]!;
        const src = pixels.subarray(index * per, (index + 1) * per);
        for (let j = 0; j < per; j++) data[i * per + j] = table[src[j]!]!;
      }
      return { images: new Tensor('F32', [n, 1, this.rows, this.cols], data), labels, indices, skipped: 0 };
    };
    return pipelineBatches(o.count, o.batchSize, o.prefetch, make);
  }
}
