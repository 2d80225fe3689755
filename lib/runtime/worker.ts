/**
 * The inference worker: owns one model and runs its forwards, so the main thread's event loop
 * never waits on a kernel. Messages are answered in order; errors travel back as messages.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { loadAnyModel } from '../models/load.js';
import { Tensor } from '../tensor/tensor.js';
import { ModelRunner, type Device, type Precision } from './forward.js';
import { describeModel } from './describe.js';

export interface WorkerInit {
  model: string;
  device?: Device;
  precision?: Precision;
  imgSize?: number;
  threads?: number;
}

export type WorkerRequest = { id: number; kind: 'forward'; images: Float32Array; shape: number[] };
export type WorkerReply =
  | { id: number; ok: true; logits: Float32Array; shape: number[]; ms: number }
  | { id: number; ok: false; error: string; errorName: string };

async function start(): Promise<void> {
  const port = parentPort!;
  const init = workerData as WorkerInit;
  let runner: ModelRunner;
  try {
    if (init.threads) {
      const { setCpuThreads } = await import('../backend/runtime-info.js');
      setCpuThreads(init.threads);
    }
    const model = await loadAnyModel(init.model, { imgSize: init.imgSize });
    runner = new ModelRunner(model, { device: init.device, precision: init.precision });
    port.postMessage({ id: 0, ok: true, info: describeModel(model, runner) });
  } catch (e) {
    const err = e as Error;
    port.postMessage({ id: 0, ok: false, error: err.message, errorName: err.name });
    return;
  }
  port.on('message', (req: WorkerRequest) => {
    try {
      const t0 = performance.now();
      const logits = runner.forward(new Tensor('F32', req.shape, req.images));
      const reply: WorkerReply = { id: req.id, ok: true, logits: logits.data, shape: [...logits.shape], ms: performance.now() - t0 };
      port.postMessage(reply, [logits.data.buffer as ArrayBuffer]);
    } catch (e) {
      const err = e as Error;
      port.postMessage({ id: req.id, ok: false, error: err.message, errorName: err.name } satisfies WorkerReply);
    }
  });
}

void start();
