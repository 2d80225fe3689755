/**
 * The HTTP application (fastify): routes, content-type handling, errors as JSON, one log line per
 * request, metrics, and the dynamic batcher between requests and the model.
 */
import { basename } from 'node:path';
import Fastify, { LogController, type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifyServerOptions } from 'fastify';
import { checkTopk, topPredictions, type Model } from '../api.js';
import { sniffImageFormat, type ImageFormat } from '../data/decode.js';
import { DataError } from '../data/errors.js';
import { InputError } from '../runtime/errors.js';
import { Tensor } from '../tensor/tensor.js';
import { Batcher, QueueFullError } from './batcher.js';
import { ConnectionTracker } from './connections.js';
import { DEFAULTS } from './defaults.js';
import { HttpError, errorBody, toHttpError } from './errors.js';
import { PROMETHEUS_CONTENT_TYPE, ServerMetrics } from './metrics.js';

export interface AppOptions {
  /** Largest batch per model forward (default 32). */
  maxBatch?: number;
  /** How long the first request of a batch waits for others, in ms (default 5). */
  maxWaitMs?: number;
  /** Classify requests admitted but not yet in a running batch before new ones get 503 (default 256). */
  maxQueue?: number;
  /** Largest request body in bytes (default 10 MiB); larger gets 413. */
  maxBodyBytes?: number;
  /** Largest decoded image, width·height, as the model was loaded with (reported by /v1/model). */
  maxPixels?: number;
  /** Classes per answer when the request has no ?topk (default 5). */
  defaultTopk?: number;
  /** fastify's logger option (default: JSON lines to stdout at level info); false for none. */
  logger?: FastifyServerOptions['logger'];
  /** Name shown by /v1/model (default: the model file's name). */
  modelName?: string;
}

/** The image media types /v1/classify takes, and the format each declares. */
const IMAGE_TYPES: Readonly<Record<string, ImageFormat | 'any'>> = {
  'image/png': 'png', 'image/jpeg': 'jpeg', 'image/jpg': 'jpeg', 'image/webp': 'webp', 'application/octet-stream': 'any',
};

/** What one classify request did, for its log line. */
interface ClassifyNote {
  batch?: number;
  queueMs?: number;
  forwardMs?: number;
  top?: number;
}

interface BatchItem {
  image: Float32Array;
}

interface BatchResult {
  logits: Float32Array;
  batch: number;
  forwardMs: number;
}

export interface App {
  readonly fastify: FastifyInstance;
  readonly metrics: ServerMetrics;
  readonly batcher: Batcher<BatchItem, BatchResult>;
  /** Requests admitted and not yet in a running batch (decoding or queued). */
  queueDepth(): number;
}

/** What the app needs of a model (a loaded Model; tests may pass a stand-in). */
export type ServedModel = Pick<Model, 'info' | 'inputShape' | 'preprocess' | 'labels' | 'path' | 'logits' | 'preprocessImage'>;

export function createApp(model: ServedModel, opts: AppOptions = {}): App {
  const maxBatch = opts.maxBatch ?? DEFAULTS.maxBatch;
  const maxWaitMs = opts.maxWaitMs ?? DEFAULTS.maxWaitMs;
  const maxQueue = opts.maxQueue ?? DEFAULTS.maxQueue;
  const maxBodyBytes = opts.maxBodyBytes ?? DEFAULTS.maxBodyBytes;
  const defaultTopk = checkTopk(opts.defaultTopk ?? DEFAULTS.defaultTopk, model.info.classes);
  const [C, H, W] = model.inputShape;
  const perImage = C * H * W;
  const classes = model.info.classes;

  let decoding = 0;
  let inFlight = 0;
  const notes = new WeakMap<FastifyRequest, ClassifyNote>();
  /** The error message of a failed request, for its log line. */
  const errors = new WeakMap<FastifyRequest, string>();

  const batcher: Batcher<BatchItem, BatchResult> = new Batcher<BatchItem, BatchResult>({
    maxBatch, maxWaitMs, maxQueue,
    run: async (items) => {
      const data = new Float32Array(items.length * perImage);
      items.forEach((it, i) => data.set(it.image, i * perImage));
      const t0 = performance.now();
      const logits = await model.logits(new Tensor('F32', [items.length, C, H, W], data));
      const forwardMs = performance.now() - t0;
      return items.map((_, i) => ({ logits: logits.data.slice(i * classes, (i + 1) * classes), batch: items.length, forwardMs }));
    },
    onBatch: (n) => metrics.batchSize.observe(n),
    onBatchDone: (_n, ms) => metrics.batchSeconds.observe(ms / 1000),
  });
  const queueDepth = (): number => decoding + batcher.queued;
  const metrics = new ServerMetrics(queueDepth, () => inFlight);

  const fastify = Fastify({
    logger: opts.logger ?? { level: 'info' },
    // One line per request comes from the onResponse hook below, not fastify's two.
    logController: new LogController({ disableRequestLogging: true }),
    requestIdHeader: 'x-request-id',
    // Slow or stalled uploads cannot hold a connection forever.
    requestTimeout: 60_000,
    connectionTimeout: 120_000,
    // New requests on kept-alive connections get 503 while draining.
    return503OnClosing: true,
    forceCloseConnections: 'idle',
  });

  fastify.addHook('onRequest', async (_req, reply) => {
    inFlight++;
    // 'close' comes once the response is sent or the connection died (onResponse misses the latter).
    reply.raw.once('close', () => inFlight--);
  });
  // Draining: server.close() waits for every connection, so those without a request in progress
  // close now, and every answer from now on closes its own (a kept-alive connection that went
  // idle later would otherwise hold the close until its timeout).
  const connections = new ConnectionTracker(fastify.server);
  let closing = false;
  fastify.addHook('preClose', async () => {
    closing = true;
    connections.closeUnused();
  });
  fastify.addHook('onSend', async (_req, reply, payload) => {
    if (closing) void reply.header('connection', 'close');
    return payload;
  });
  fastify.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched';
    const seconds = reply.elapsedTime / 1000;
    metrics.requests.inc({ route, code: String(reply.statusCode) });
    metrics.latency.observe(seconds, { route });
    const note = notes.get(req);
    const line: Record<string, unknown> = {
      method: req.method, url: req.url, status: reply.statusCode, ms: Number(reply.elapsedTime.toFixed(2)),
      bytesIn: Number(req.headers['content-length'] ?? 0) || undefined,
      ...note,
    };
    const err = errors.get(req);
    if (err) line.error = err;
    req.log.info(line, 'request');
  });
  fastify.addHook('onRequestAbort', async (req) => {
    req.log.info({ method: req.method, url: req.url, aborted: true }, 'request aborted by the client');
  });

  fastify.setErrorHandler((error: unknown, req, reply) => {
    const h = toHttpError(error);
    if (h.status >= 500) req.log.error({ err: error }, 'internal error');
    errors.set(req, h.message);
    sendError(reply, h);
  });
  fastify.setNotFoundHandler((req, reply) => {
    const h = new HttpError(404, 'not_found', `no route ${req.method} ${req.url.split('?')[0]}`);
    errors.set(req, h.message);
    sendError(reply, h);
  });

  fastify.get('/healthz', async () => ({ status: 'ok' }));

  fastify.get('/v1/model', async () => {
    const i = model.info;
    const p = model.preprocess;
    return {
      name: opts.modelName ?? basename(model.path),
      arch: i.arch, config: i.config, parameters: i.parameters, seqLen: i.seqLen, classes: i.classes,
      device: i.device, precision: i.precision, quantization: i.quantization,
      labels: model.labels,
      preprocess: { channels: p.channels, size: p.size, resize: p.resize, mean: p.mean, std: p.std },
      batching: { maxBatch, maxWaitMs, maxQueue },
      limits: { maxBodyBytes, maxPixels: opts.maxPixels ?? null },
    };
  });

  fastify.get('/metrics', async (_req, reply) => {
    reply.type(PROMETHEUS_CONTENT_TYPE);
    return metrics.registry.render();
  });

  // The classify route has its own body parsers: images only, everything else 415.
  void fastify.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser(Object.keys(IMAGE_TYPES), { parseAs: 'buffer', bodyLimit: maxBodyBytes }, (_req, body, done) => done(null, body));

    scope.post('/v1/classify', {
      bodyLimit: maxBodyBytes,
      // Shed load before reading the body.
      onRequest: async () => {
        if (queueDepth() >= maxQueue) {
          metrics.rejected.inc({ reason: 'queue_full' });
          throw new QueueFullError(batcher.retryAfterSeconds());
        }
      },
    }, async (req) => {
      const topk = parseTopk(req.query, defaultTopk, classes);
      const body = req.body;
      if (!(body instanceof Uint8Array) || body.length === 0) throw new HttpError(400, 'empty_body', 'the request has no body: send the image bytes');
      const declared = IMAGE_TYPES[mediaType(req.headers['content-type'])];
      const sniffed = sniffImageFormat(body);
      if (!sniffed) {
        metrics.rejected.inc({ reason: 'bad_image' });
        throw new HttpError(400, 'bad_image', `the body is not a PNG, JPEG or WebP image (${body.length} bytes)`);
      }
      if (declared !== 'any' && declared !== sniffed) {
        metrics.rejected.inc({ reason: 'bad_image' });
        throw new HttpError(400, 'content_type_mismatch', `Content-Type says ${declared?.toUpperCase()} but the body is a ${sniffed.toUpperCase()} image`);
      }
      if (queueDepth() >= maxQueue) {
        metrics.rejected.inc({ reason: 'queue_full' });
        throw new QueueFullError(batcher.retryAfterSeconds());
      }
      let image: Tensor<'F32'>;
      decoding++;
      try {
        image = await model.preprocessImage(body, 'body');
      } catch (e) {
        if (e instanceof DataError) metrics.rejected.inc({ reason: 'bad_image' });
        throw e;
      } finally {
        decoding--;
      }
      const queuedAt = performance.now();
      let r: BatchResult;
      try {
        r = await batcher.submit({ image: image.data });
      } catch (e) {
        if (e instanceof QueueFullError) metrics.rejected.inc({ reason: 'queue_full' });
        throw e;
      }
      const top = topPredictions(r.logits, classes, 0, topk, model.labels);
      notes.set(req, {
        batch: r.batch, queueMs: Number((performance.now() - queuedAt - r.forwardMs).toFixed(2)),
        forwardMs: Number(r.forwardMs.toFixed(2)), top: top[0]!.class,
      });
      return { top };
    });
  });

  return { fastify, metrics, batcher, queueDepth };
}

function sendError(reply: FastifyReply, h: HttpError): void {
  if (h.retryAfterS !== undefined) void reply.header('retry-after', String(h.retryAfterS));
  void reply.code(h.status).type('application/json; charset=utf-8').send(errorBody(h));
}

/** "image/png; charset=binary" → "image/png". */
function mediaType(header: string | undefined): string {
  return (header ?? '').split(';')[0]!.trim().toLowerCase();
}

function parseTopk(query: unknown, def: number, classes: number): number {
  const q = (query ?? {}) as Record<string, unknown>;
  const raw = q.topk;
  if (raw === undefined) return def;
  if (typeof raw !== 'string' || !/^\d{1,9}$/.test(raw)) throw new HttpError(400, 'bad_request', `topk must be a positive integer, got ${JSON.stringify(raw)}`);
  try {
    return checkTopk(Number(raw), classes);
  } catch (e) {
    if (e instanceof InputError) throw new HttpError(400, 'bad_request', e.message);
    throw e;
  }
}
