/**
 * `ptq4vm serve` as a library: load a model, start the HTTP server on it, close it gracefully.
 */
import type { AddressInfo } from 'node:net';
import { loadModel, type Device, type Model, type Precision } from '../api.js';
import { createApp, type App, type AppOptions } from './app.js';
import { DEFAULTS } from './defaults.js';

export { createApp, type App, type AppOptions, type ServedModel } from './app.js';
export { DEFAULTS } from './defaults.js';
export { Batcher, QueueFullError, type BatcherOptions } from './batcher.js';
export { HttpError } from './errors.js';

export interface ServerOptions extends Omit<AppOptions, 'maxPixels'> {
  /** Model file or built-in name. */
  model: string;
  /** Interface to listen on (default 127.0.0.1). */
  host?: string;
  /** Port (default 8080; 0 picks a free one). */
  port?: number;
  device?: Device;
  precision?: Precision;
  threads?: number;
  /** Image size of an official .pth checkpoint (default 224). */
  imgSize?: number;
  /** Largest decoded width·height per image; larger images are refused with 400 before decoding. */
  maxPixels?: number;
  /** How long `close` waits for in-flight requests before cutting connections (default 30 s). */
  drainTimeoutMs?: number;
}

export interface RunningServer {
  /** http://host:port */
  readonly url: string;
  readonly app: App;
  readonly model: Model;
  /**
   * Stops accepting connections, answers the requests already received (new ones on open
   * connections get 503), then frees the model. Resolves true if everything drained in time,
   * false if connections had to be cut after drainTimeoutMs.
   */
  close(): Promise<boolean>;
}

export async function startServer(o: ServerOptions): Promise<RunningServer> {
  const maxPixels = o.maxPixels ?? DEFAULTS.maxPixels;
  const maxBatch = o.maxBatch ?? DEFAULTS.maxBatch;
  const model = await loadModel(o.model, { device: o.device, precision: o.precision, threads: o.threads, imgSize: o.imgSize, maxPixels, maxBatch });
  let app: App;
  try {
    app = createApp(model, { ...o, maxPixels, maxBatch });
    await app.fastify.listen({ host: o.host ?? '127.0.0.1', port: o.port ?? 8080 });
  } catch (e) {
    await model.dispose();
    throw e;
  }
  const addr = app.fastify.server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  const url = `http://${host}:${addr.port}`;
  const drainTimeoutMs = o.drainTimeoutMs ?? DEFAULTS.drainTimeoutMs;
  let closing: Promise<boolean> | undefined;
  const close = (): Promise<boolean> => {
    closing ??= (async () => {
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<boolean>((resolve) => {
        timer = setTimeout(() => {
          app.fastify.server.closeAllConnections();
          resolve(false);
        }, drainTimeoutMs);
      });
      const drained = app.fastify.close().then(() => app.batcher.idle()).then(() => true);
      const ok = await Promise.race([drained, timedOut]);
      clearTimeout(timer);
      await model.dispose();
      return ok;
    })();
    return closing;
  };
  return { url, app, model, close };
}
