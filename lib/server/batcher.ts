/**
 * Dynamic batching: items submitted one by one run together, in one call of `run`, when they
 * arrive close together. One batch runs at a time; while it runs, new items wait, so the next
 * batch holds everything that arrived meanwhile (up to maxBatch). A batch starts when it is full,
 * or when its oldest item has waited maxWaitMs, or as soon as the runner is free if its oldest
 * item has already waited that long.
 */

/** The queue is full: the caller should answer 503 and retry after `retryAfterS`. */
export class QueueFullError extends Error {
  override name = 'QueueFullError';
  constructor(readonly retryAfterS: number) {
    super('the server is busy: its queue is full');
  }
}

export interface BatcherOptions<I, O> {
  /** Runs a batch; must return one output per item, in order. */
  run: (items: I[]) => Promise<O[]>;
  /** Largest batch (≥ 1). */
  maxBatch: number;
  /** How long the first item of a batch may wait for others (≥ 0). */
  maxWaitMs: number;
  /** Most items waiting (not yet in a running batch); more are refused with QueueFullError. */
  maxQueue: number;
  /** Called as each batch starts, with its size. */
  onBatch?: (size: number) => void;
  /** Called as each batch ends, with its size and run time. */
  onBatchDone?: (size: number, ms: number) => void;
}

interface Waiting<I, O> {
  item: I;
  since: number;
  resolve: (o: O) => void;
  reject: (e: unknown) => void;
}

export class Batcher<I, O> {
  private readonly queue: Waiting<I, O>[] = [];
  private running = false;
  private timer: NodeJS.Timeout | undefined;
  private idleWaiters: Array<() => void> = [];
  /** Mean run time of recent batches, for Retry-After. */
  private avgBatchMs = 0;

  constructor(private readonly o: BatcherOptions<I, O>) {
    if (!(Number.isInteger(o.maxBatch) && o.maxBatch >= 1)) throw new RangeError(`maxBatch must be a positive integer, got ${o.maxBatch}`);
    if (!(o.maxWaitMs >= 0)) throw new RangeError(`maxWaitMs must be ≥ 0, got ${o.maxWaitMs}`);
    if (!(Number.isInteger(o.maxQueue) && o.maxQueue >= 1)) throw new RangeError(`maxQueue must be a positive integer, got ${o.maxQueue}`);
  }

  /** Items waiting for a batch. */
  get queued(): number {
    return this.queue.length;
  }

  /** Whether a batch is running now. */
  get busy(): boolean {
    return this.running;
  }

  /** Seconds a client refused now should wait: the time to work through a full queue, at least 1. */
  retryAfterSeconds(): number {
    const batches = Math.ceil((this.queue.length + 1) / this.o.maxBatch) + 1;
    return Math.max(1, Math.ceil((batches * Math.max(this.avgBatchMs, this.o.maxWaitMs)) / 1000));
  }

  /** Whether `extra` more items would fit in the queue now. */
  hasRoom(extra = 1): boolean {
    return this.queue.length + extra <= this.o.maxQueue;
  }

  /** Queues one item; resolves with its output. Throws QueueFullError at once when the queue is full. */
  submit(item: I): Promise<O> {
    if (!this.hasRoom()) throw new QueueFullError(this.retryAfterSeconds());
    return new Promise<O>((resolve, reject) => {
      this.queue.push({ item, since: performance.now(), resolve, reject });
      this.schedule();
    });
  }

  /** Resolves once nothing is queued or running. */
  idle(): Promise<void> {
    if (!this.running && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private schedule(): void {
    if (this.running || this.queue.length === 0) return;
    const waited = performance.now() - this.queue[0]!.since;
    if (this.queue.length >= this.o.maxBatch || waited >= this.o.maxWaitMs) {
      this.startBatch();
    } else if (!this.timer) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.schedule();
      }, this.o.maxWaitMs - waited);
    }
  }

  private startBatch(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    const batch = this.queue.splice(0, this.o.maxBatch);
    this.running = true;
    this.o.onBatch?.(batch.length);
    const t0 = performance.now();
    let outputs: Promise<O[]>;
    try {
      outputs = this.o.run(batch.map((w) => w.item));
    } catch (e) {
      outputs = Promise.reject(e);
    }
    outputs.then(
      (out) => {
        if (out.length !== batch.length) throw new Error(`batch runner returned ${out.length} outputs for ${batch.length} items`);
        batch.forEach((w, i) => w.resolve(out[i]!));
      },
    ).catch((e: unknown) => {
      for (const w of batch) w.reject(e);
    }).finally(() => {
      const ms = performance.now() - t0;
      this.avgBatchMs = this.avgBatchMs === 0 ? ms : 0.8 * this.avgBatchMs + 0.2 * ms;
      this.o.onBatchDone?.(batch.length, ms);
      this.running = false;
      this.schedule();
      if (!this.running && this.queue.length === 0) for (const w of this.idleWaiters.splice(0)) w();
    });
  }
}
