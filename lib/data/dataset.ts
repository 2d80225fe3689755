import { availableParallelism } from 'node:os';
import { Tensor } from '../tensor/tensor.js';
import { DataError } from './errors.js';
import type { Preprocess } from './preprocess.js';

/** One batch of preprocessed images. */
export interface Batch {
  /** [B, C, H, W] float32; B is smaller than batchSize for the last batch or when images were skipped. */
  images: Tensor<'F32'>;
  /** Class index per image; −1 for unlabeled data. */
  labels: Int32Array;
  /** Position of each image in the data set (so skipped images leave gaps). */
  indices: Int32Array;
  /** Images of this batch's range that could not be decoded and were left out. */
  skipped: number;
}

/** An image left out of a batch because it could not be decoded (non-strict mode). */
export interface SkippedImage {
  index: number;
  file: string;
  error: DataError;
}

export interface BatchOptions {
  preprocess: Preprocess;
  /** Images per batch (default 64). */
  batchSize?: number;
  /** Only the first `limit` images (of the data set, or of `indices`; default: all). */
  limit?: number;
  /** Images to read, in this order (a calibration subset, say: see sampleIndices); default: all, in order. */
  indices?: ArrayLike<number>;
  /** Batches decoded ahead of the consumer (default 2; 0 decodes only on demand). */
  prefetch?: number;
  /**
   * Images decoded at once (default: one less than libuv's pool size, at most the core count, at
   * least 1), so an inference job submitted to the same pool still finds a free thread.
   */
  concurrency?: number;
  /** A corrupt image ends the iteration with its DataError instead of being skipped (default false). */
  strict?: boolean;
  /** Called for each skipped image; by default a line is written to stderr. */
  onSkip?: (s: SkippedImage) => void;
  /** Largest decoded width·height accepted per image. */
  maxPixels?: number;
  /** PIL-exact resizing when shrinking too (slower; see decode.ts). */
  exactResize?: boolean;
}

export interface Dataset {
  readonly kind: 'idx' | 'image-folder';
  /** The path it was read from. */
  readonly source: string;
  /** One line for people: what and how many. */
  readonly description: string;
  readonly length: number;
  /** Class names by class index; empty for unlabeled data. */
  readonly classNames: readonly string[];
  /** False for a folder of images without class sub-folders (labels are −1). */
  readonly labeled: boolean;
  /** Throws DataError (naming the file) when this data cannot feed a model with this preprocessing. */
  checkPreprocess(p: Preprocess): void;
  /**
   * Streams the data set (or opts.indices) in order, in batches. Options are checked (and
   * checkPreprocess run) when called, before the first batch is awaited. Leaving the loop early
   * stops decoding.
   */
  batches(opts: BatchOptions): AsyncGenerator<Batch, void, undefined>;
}

export interface ResolvedBatchOptions {
  preprocess: Preprocess;
  batchSize: number;
  /** Images to read: the first `count` of `order`. */
  count: number;
  /** Position → data set index. */
  order: (position: number) => number;
  prefetch: number;
  concurrency: number;
  strict: boolean;
  onSkip: (s: SkippedImage) => void;
  maxPixels: number | undefined;
  exactResize: boolean;
}

function defaultConcurrency(): number {
  const pool = Number(process.env.UV_THREADPOOL_SIZE) || 4;
  return Math.max(1, Math.min(pool - 1, availableParallelism()));
}

function positiveInt(v: number | undefined, name: string, dflt: number, min: number): number {
  if (v === undefined) return dflt;
  if (!Number.isSafeInteger(v) || v < min) throw new RangeError(`${name} must be an integer ≥ ${min}, got ${v}`);
  return v;
}

export function resolveBatchOptions(opts: BatchOptions, length: number): ResolvedBatchOptions {
  if (!opts || typeof opts !== 'object' || !opts.preprocess) throw new TypeError('batches() needs { preprocess }');
  let order = (position: number): number => position;
  let available = length;
  if (opts.indices !== undefined) {
    const given = opts.indices;
    const idx = new Int32Array(given.length);
    for (let i = 0; i < given.length; i++) {
      const v = given[i]!;
      if (!Number.isInteger(v) || v < 0 || v >= length) throw new RangeError(`indices[${i}] = ${v} is not an image index in [0, ${length})`);
      idx[i] = v;
    }
    order = (position) => idx[position]!;
    available = idx.length;
  }
  const limit = positiveInt(opts.limit, 'limit', available, 0);
  return {
    preprocess: opts.preprocess,
    batchSize: positiveInt(opts.batchSize, 'batchSize', 64, 1),
    count: Math.min(limit, available),
    order,
    prefetch: positiveInt(opts.prefetch, 'prefetch', 2, 0),
    concurrency: positiveInt(opts.concurrency, 'concurrency', defaultConcurrency(), 1),
    strict: opts.strict ?? false,
    onSkip: opts.onSkip ?? ((s) => process.stderr.write(`ptq4vm: skipped image ${s.index}: ${s.error.message}\n`)),
    maxPixels: opts.maxPixels,
    exactResize: opts.exactResize ?? false,
  };
}

/**
 * Yields makeBatch(start, end) for consecutive ranges of [0, count), keeping `prefetch` batches
 * in flight while the consumer works on the current one.
 */
export async function* pipelineBatches(
  count: number, batchSize: number, prefetch: number,
  makeBatch: (start: number, end: number) => Promise<Batch>,
  onStop: () => void = () => {},
): AsyncGenerator<Batch, void, undefined> {
  const queue: Promise<Batch>[] = [];
  let next = 0;
  const fill = (depth: number): void => {
    while (queue.length < depth && next < count) {
      const start = next;
      next = Math.min(count, start + batchSize);
      const p = makeBatch(start, next);
      p.catch(() => {}); // awaited below; this keeps an abandoned one from being "unhandled"
      queue.push(p);
    }
  };
  try {
    for (;;) {
      fill(Math.max(1, prefetch));
      const next = queue.shift();
      if (!next) break;
      const batch = await next;
      fill(prefetch); // decoding goes on while the consumer holds this batch
      yield batch;
    }
  } finally {
    onStop();
  }
}

/**
 * Runs async jobs at most `concurrency` at a time, in submission order. `cancel` drops the jobs
 * not yet started (their promises reject with `reason`).
 */
export class JobLimiter {
  private running = 0;
  /** Set by cancel: later failures are the cancellation, not bad data. */
  cancelled = false;
  private readonly waiting: Array<{ start: () => void; reject: (e: unknown) => void }> = [];

  constructor(private readonly concurrency: number) {}

  run<T>(job: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const start = (): void => {
        this.running++;
        job().then(resolve, reject).finally(() => {
          this.running--;
          this.waiting.shift()?.start();
        });
      };
      if (this.running < this.concurrency) start();
      else this.waiting.push({ start, reject });
    });
  }

  cancel(reason: unknown): void {
    this.cancelled = true;
    for (const w of this.waiting.splice(0)) w.reject(reason);
  }
}

/**
 * The batch of positions [start, end) assembled from per-image decoders: decodeOne(index, out,
 * offset) writes image `index` at out[offset…] or throws a DataError. Failed images are dropped
 * (and reported) unless strict.
 */
export async function assembleBatch(
  start: number, end: number, o: ResolvedBatchOptions, limiter: JobLimiter,
  decodeOne: (index: number, out: Float32Array, offset: number) => Promise<void>,
  labelOf: (index: number) => number, fileOf: (index: number) => string,
): Promise<Batch> {
  const { channels, size } = o.preprocess;
  const per = channels * size * size;
  const n = end - start;
  const data = new Float32Array(n * per);
  const results = await Promise.allSettled(
    Array.from({ length: n }, (_, i) => limiter.run(() => decodeOne(o.order(start + i), data, i * per))),
  );
  if (limiter.cancelled) throw new DataError('iteration stopped');
  const labels = new Int32Array(n);
  const indices = new Int32Array(n);
  let kept = 0;
  for (let i = 0; i < n; i++) {
    const r = results[i]!;
    const index = o.order(start + i);
    if (r.status === 'rejected') {
      const error = r.reason instanceof DataError ? r.reason : new DataError(String(r.reason), fileOf(index), { cause: r.reason });
      if (o.strict) throw error;
      o.onSkip({ index, file: fileOf(index), error });
      continue;
    }
    if (kept !== i) data.copyWithin(kept * per, i * per, (i + 1) * per);
    labels[kept] = labelOf(index);
    indices[kept] = index;
    kept++;
  }
  return {
    images: new Tensor('F32', [kept, channels, size, size], kept === n ? data : data.subarray(0, kept * per)),
    labels: kept === n ? labels : labels.slice(0, kept),
    indices: kept === n ? indices : indices.slice(0, kept),
    skipped: n - kept,
  };
}

/**
 * `count` distinct indices of [0, length), drawn uniformly with a seeded generator (the same seed
 * gives the same subset on every machine), in increasing order.
 */
export function sampleIndices(length: number, count: number, seed = 0): Int32Array {
  if (!Number.isSafeInteger(count) || count < 0 || count > length) throw new RangeError(`cannot draw ${count} of ${length} images`);
  let state = seed >>> 0;
  const next = (): number => {
    // mulberry32
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  const pool = new Int32Array(length);
  for (let i = 0; i < length; i++) pool[i] = i;
  for (let i = 0; i < count; i++) {
    const j = i + Math.floor(next() * (length - i));
    const t = pool[i]!;
    pool[i] = pool[j]!;
    pool[j] = t;
  }
  return pool.slice(0, count).sort();
}
