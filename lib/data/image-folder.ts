import type { Dirent } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { assembleBatch, JobLimiter, pipelineBatches, resolveBatchOptions, type Batch, type BatchOptions, type Dataset } from './dataset.js';
import { decodeImageInto } from './decode.js';
import { DataError, describeError } from './errors.js';
import type { Preprocess } from './preprocess.js';

export const IMAGE_EXTENSIONS: readonly string[] = Object.freeze(['.jpg', '.jpeg', '.png', '.webp']);

function isImageName(name: string): boolean {
  return IMAGE_EXTENSIONS.includes(extname(name).toLowerCase());
}

/** Python's string order (by code point), which torchvision's sorted() uses; UTF-8 byte order is the same. */
function byCodePoint(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

async function listDir(dir: string): Promise<Dirent[]> {
  try {
    return (await readdir(dir, { withFileTypes: true })).filter((e) => !e.name.startsWith('.')).sort((a, b) => byCodePoint(a.name, b.name));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new DataError(code === 'ENOENT' ? 'no such folder' : `cannot list folder: ${describeError(e)}`, dir, { cause: e });
  }
}

/** Entry kind, following symbolic links (as torchvision's os.walk(followlinks=True) does). */
async function kindOf(dir: string, e: Dirent): Promise<'dir' | 'file' | 'other'> {
  if (e.isDirectory()) return 'dir';
  if (e.isFile()) return 'file';
  if (e.isSymbolicLink()) {
    try {
      const s = await stat(join(dir, e.name));
      return s.isDirectory() ? 'dir' : s.isFile() ? 'file' : 'other';
    } catch {
      return 'other'; // a dangling link is not an image
    }
  }
  return 'other';
}

/** Image files under dir, recursively: a folder's files in sorted order, then its sub-folders'. */
async function collectImages(dir: string, out: string[], seen: Set<string>, depth = 0): Promise<void> {
  if (depth > 32) throw new DataError('folders nested more than 32 deep (a link cycle?)', dir);
  const subdirs: string[] = [];
  for (const e of await listDir(dir)) {
    const kind = await kindOf(dir, e);
    const path = join(dir, e.name);
    if (kind === 'file' && isImageName(e.name)) out.push(path);
    else if (kind === 'dir') subdirs.push(path);
  }
  for (const sub of subdirs) {
    if (seen.has(sub)) continue;
    seen.add(sub);
    await collectImages(sub, out, seen, depth + 1);
  }
}

export interface ImageFolderScan {
  classNames: string[];
  files: string[];
  /** Class per file; −1 for every file of an unlabeled folder. */
  labels: Int32Array;
}

/**
 * torchvision's ImageFolder layout: each sub-folder of root is a class (sorted names give the
 * class indices), holding images at any depth. Files at the top level are ignored then. A folder
 * with images but no sub-folders is read unlabeled. Names starting with "." are skipped.
 */
export async function scanImageFolder(root: string): Promise<ImageFolderScan> {
  const entries = await listDir(root);
  const classNames: string[] = [];
  const topImages: string[] = [];
  for (const e of entries) {
    const kind = await kindOf(root, e);
    if (kind === 'dir') classNames.push(e.name);
    else if (kind === 'file' && isImageName(e.name)) topImages.push(join(root, e.name));
  }
  if (classNames.length === 0) {
    if (topImages.length === 0) {
      throw new DataError(`empty folder: no class sub-folders and no ${IMAGE_EXTENSIONS.join('/')} images`, root);
    }
    return { classNames: [], files: topImages, labels: new Int32Array(topImages.length).fill(-1) };
  }
  const files: string[] = [];
  const labelList: number[] = [];
  for (let c = 0; c < classNames.length; c++) {
    const dir = join(root, classNames[c]!);
    const before = files.length;
    await collectImages(dir, files, new Set([dir]));
    if (files.length === before) {
      throw new DataError(`class folder "${classNames[c]}" holds no ${IMAGE_EXTENSIONS.join('/')} images (each sub-folder of an image folder is a class)`, dir);
    }
    for (let i = before; i < files.length; i++) labelList.push(c);
  }
  return { classNames, files, labels: Int32Array.from(labelList) };
}

/** A folder of JPEG/PNG/WebP images, decoded on demand with the Vim/timm eval preprocessing. */
export class ImageFolderDataset implements Dataset {
  readonly kind = 'image-folder' as const;
  readonly classNames: readonly string[];
  readonly labeled: boolean;
  private readonly files: readonly string[];
  private readonly labels: Int32Array;

  private constructor(readonly source: string, scan: ImageFolderScan) {
    this.classNames = Object.freeze(scan.classNames);
    this.labeled = scan.classNames.length > 0;
    this.files = Object.freeze(scan.files);
    this.labels = scan.labels;
  }

  static async open(root: string): Promise<ImageFolderDataset> {
    return new ImageFolderDataset(root, await scanImageFolder(root));
  }

  get length(): number {
    return this.files.length;
  }

  get description(): string {
    const what = this.labeled ? `${this.classNames.length} classes` : 'unlabeled';
    return `image folder ${this.source}: ${this.length} images, ${what}`;
  }

  /** Path of image i. */
  file(i: number): string {
    return this.files[i]!;
  }

  /** Label of image i (−1 when unlabeled). */
  label(i: number): number {
    return this.labels[i]!;
  }

  /** Any size and channel count is fine: images are always resized and converted. */
  checkPreprocess(_p: Preprocess): void {}

  batches(opts: BatchOptions): AsyncGenerator<Batch, void, undefined> {
    const o = resolveBatchOptions(opts, this.length);
    const limiter = new JobLimiter(o.concurrency);
    const stopped = new DataError('iteration stopped');
    const decodeOne = async (index: number, out: Float32Array, offset: number): Promise<void> => {
      const path = this.files[index]!;
      let buf: Buffer;
      try {
        buf = await readFile(path);
      } catch (e) {
        throw new DataError(`cannot read: ${describeError(e)}`, path, { cause: e });
      }
      await decodeImageInto(buf, o.preprocess, out, offset, { source: path, maxPixels: o.maxPixels, exactResize: o.exactResize });
    };
    const make = (start: number, end: number): Promise<Batch> =>
      assembleBatch(start, end, o, limiter, decodeOne, (i) => this.labels[i]!, (i) => this.files[i]!);
    return pipelineBatches(o.count, o.batchSize, o.prefetch, make, () => limiter.cancel(stopped));
  }
}
