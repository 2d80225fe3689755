// Request bodies for server tests: real Fashion-MNIST images as PNG, and hostile ones.
import { crc32 } from 'node:zlib';
import sharp from 'sharp';
import { builtinDatasetPath, readIdxImages } from '../../lib/data/index.js';

export interface FmnistPngs {
  /** PNG bytes per image, in data set order. */
  pngs: Buffer[];
  /** The raw u8 pixels, 784 per image. */
  pixels: Uint8Array;
}

/** The first n Fashion-MNIST test images (the built-in data set), each encoded as a grayscale PNG. */
export async function fmnistPngs(n: number): Promise<FmnistPngs> {
  const idx = await readIdxImages(builtinDatasetPath('fmnist')!);
  const per = idx.rows * idx.cols;
  const pngs = await Promise.all(Array.from({ length: n }, (_, i) =>
    sharp(Buffer.from(idx.pixels.subarray(i * per, (i + 1) * per)), { raw: { width: idx.cols, height: idx.rows, channels: 1 } }).png().toBuffer()));
  return { pngs, pixels: idx.pixels.subarray(0, n * per) };
}

function chunk(type: string, data: Uint8Array): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([len, body, crc]);
}

/** A well-formed PNG whose header claims width×height (8-bit gray) but whose data is a few bytes: a lying header. */
export function lyingPng(width: number, height: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 0; // grayscale
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', Buffer.from([0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01])),
    chunk('IEND', new Uint8Array(0)),
  ]);
}

/** A small file that decodes to side×side pixels (a decompression bomb when side is large). */
export async function bombPng(side: number): Promise<Buffer> {
  return sharp({ create: { width: side, height: side, channels: 3, background: { r: 0, g: 0, b: 0 } } }).png({ compressionLevel: 9 }).toBuffer();
}

/** A smooth RGB test pattern of width×height as JPEG. */
export async function smoothJpeg(width: number, height: number): Promise<Buffer> {
  const px = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < 3; c++) px[(y * width + x) * 3 + c] = Math.round(127 + 100 * Math.sin(x * (0.03 + 0.01 * c) + y * 0.05));
    }
  }
  return sharp(px, { raw: { width, height, channels: 3 } }).jpeg({ quality: 90 }).toBuffer();
}

export async function jpegOf(png: Buffer): Promise<Buffer> {
  return sharp(png).jpeg({ quality: 90 }).toBuffer();
}

export interface Reply {
  status: number;
  headers: Headers;
  body: unknown;
  text: string;
}

/** POST bytes to url with a Content-Type (or none); the reply's JSON (when it is JSON) and text. */
export async function post(url: string, body: Uint8Array | undefined, contentType: string | undefined): Promise<Reply> {
  const headers: Record<string, string> = {};
  if (contentType !== undefined) headers['content-type'] = contentType;
  // A copy typed as ArrayBuffer-backed, which is what fetch accepts.
  const res = await fetch(url, { method: 'POST', body: body && new Uint8Array(body), headers });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, body: json, text };
}

/** Runs jobs with at most `concurrency` in flight; results in job order. */
export async function pool<T>(count: number, concurrency: number, job: (i: number) => Promise<T>): Promise<T[]> {
  const out = new Array<T>(count);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      const i = next++;
      out[i] = await job(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return out;
}

/** The ErrorBody shape every error answer has. */
export function errorOf(r: Reply): { status: number; code: string; message: string } {
  const e = (r.body as { error?: { status: number; code: string; message: string } } | undefined)?.error;
  if (!e) throw new Error(`not a JSON error answer (status ${r.status}): ${r.text.slice(0, 200)}`);
  return e;
}
