import { Worker } from 'node:worker_threads';
import { Tensor } from '../tensor/tensor.js';
import type { ModelInfo } from './describe.js';
import type { WorkerInit, WorkerReply } from './worker.js';

/** An error raised inside the worker, re-thrown on the caller's side with its name. */
export class EngineError extends Error {
  constructor(message: string, override readonly name: string = 'EngineError') {
    super(message);
  }
}

interface Pending {
  resolve: (r: { logits: Tensor<'F32'>; ms: number }) => void;
  reject: (e: Error) => void;
}

/**
 * A model running in its own worker thread. `forward` may be called concurrently: requests
 * queue in the worker and are answered in order.
 */
export class InferenceEngine {
  readonly info: ModelInfo;
  private readonly worker: Worker;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private closed = false;

  private constructor(worker: Worker, info: ModelInfo) {
    this.worker = worker;
    this.info = info;
    worker.on('message', (r: WorkerReply) => {
      const p = this.pending.get(r.id);
      if (!p) return;
      this.pending.delete(r.id);
      if (r.ok) p.resolve({ logits: new Tensor('F32', r.shape, r.logits), ms: r.ms });
      else p.reject(new EngineError(r.error, r.errorName));
    });
    worker.on('error', (e) => this.failAll(e));
    worker.on('exit', (code) => this.failAll(new EngineError(`inference worker exited (code ${code})`)));
  }

  static async start(init: WorkerInit): Promise<InferenceEngine> {
    const worker = new Worker(new URL('./worker.js', import.meta.url), { workerData: init });
    const info = await new Promise<ModelInfo>((resolve, reject) => {
      const onMessage = (m: { id: number; ok: boolean; info?: ModelInfo; error?: string; errorName?: string }) => {
        if (m.id !== 0) return;
        worker.off('message', onMessage);
        worker.off('error', onError);
        if (m.ok) resolve(m.info!);
        else reject(new EngineError(m.error!, m.errorName));
      };
      const onError = (e: Error) => reject(e);
      worker.on('message', onMessage);
      worker.once('error', onError);
    }).catch(async (e) => {
      await worker.terminate();
      throw e;
    });
    return new InferenceEngine(worker, info);
  }

  /** images [B, C, H, W] (normalized) → logits [B, classes]; `ms` is the worker's compute time. */
  forward(images: Tensor<'F32'>): Promise<{ logits: Tensor<'F32'>; ms: number }> {
    if (this.closed) return Promise.reject(new EngineError('the model was disposed'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      // A copy travels, so the caller may keep using its tensor.
      const data = images.data.slice();
      this.worker.postMessage({ id, kind: 'forward', images: data, shape: [...images.shape] }, [data.buffer as ArrayBuffer]);
    });
  }

  async dispose(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.failAll(new EngineError('the model was disposed'));
    await this.worker.terminate();
  }

  private failAll(e: Error): void {
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
  }
}
