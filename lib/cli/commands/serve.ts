import { DEFAULTS } from '../../server/defaults.js';
import { choiceOption, floatOption, intOption, parseOptions, requireOption, type Command } from '../command.js';

const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

export const serveCommand: Command = {
  name: 'serve',
  summary: 'HTTP inference server: POST an image, get the top classes',
  usage: `Usage: ptq4vm serve --model M [options]

Serves M over HTTP. Requests that arrive together are batched into one forward.
  POST /v1/classify[?topk=K]  body: a PNG, JPEG or WebP image (Content-Type image/png, image/jpeg,
                              image/webp or application/octet-stream)
                              → {"top": [{"class": i, "label": "…", "prob": p}, …]}
  GET  /v1/model              config, precision, quantization, preprocessing, limits
  GET  /healthz               {"status": "ok"}
  GET  /metrics               Prometheus text: requests, latency, batch sizes, queue depth
Errors are JSON {"error": {"status", "code", "message"}}: 400 bad image, 413 body too large,
415 wrong Content-Type, 503 queue full (with Retry-After). Logs: one JSON line per request on
stdout. SIGTERM or SIGINT: stop accepting, answer what was received, exit 0.

Options:
  --model M             model file or built-in name (vim-fmnist)
  --host H              interface (default 127.0.0.1)
  --port P              port (default 8080; 0 = any free port, printed at start)
  --device D            cpu (default) | cuda
  --precision P         fp32 | int8 | fake-quant (default: int8 for a quantized model, else fp32)
  --threads N           CPU kernel threads
  --max-batch B         largest batch per forward (default ${DEFAULTS.maxBatch})
  --max-wait-ms T       how long a request waits for others to batch with (default ${DEFAULTS.maxWaitMs})
  --max-queue Q         requests waiting for a batch before 503 (default ${DEFAULTS.maxQueue})
  --max-body-bytes N    largest request body (default ${DEFAULTS.maxBodyBytes})
  --max-pixels N        largest decoded image, width·height (default ${DEFAULTS.maxPixels})
  --topk K              classes per answer without ?topk (default ${DEFAULTS.defaultTopk})
  --drain-timeout-ms T  on SIGTERM, how long in-flight requests may take (default ${DEFAULTS.drainTimeoutMs})
  --img-size N          image size of an official .pth checkpoint (default 224)
  --log-level L         ${LOG_LEVELS.join(' | ')} (default info)`,
  async run(argv) {
    const { values } = parseOptions(argv, {
      model: { type: 'string' }, host: { type: 'string' }, port: { type: 'string' }, device: { type: 'string' },
      precision: { type: 'string' }, threads: { type: 'string' }, 'max-batch': { type: 'string' },
      'max-wait-ms': { type: 'string' }, 'max-queue': { type: 'string' }, 'max-body-bytes': { type: 'string' },
      'max-pixels': { type: 'string' }, topk: { type: 'string' }, 'drain-timeout-ms': { type: 'string' },
      'img-size': { type: 'string' }, 'log-level': { type: 'string' },
    });
    const model = requireOption(values.model, 'model');
    const precision = values.precision === undefined ? undefined : choiceOption(values.precision, 'precision', ['fp32', 'fp16', 'int8', 'fake-quant'] as const, 'fp32');
    // Loaded here, so other commands start without fastify.
    const { startServer } = await import('../../server/index.js');
    const server = await startServer({
      model,
      host: values.host ?? '127.0.0.1',
      port: intOption(values.port, 'port', 8080, 0, 65535),
      device: choiceOption(values.device, 'device', ['cpu', 'cuda'] as const, 'cpu'),
      precision,
      threads: values.threads === undefined ? undefined : intOption(values.threads, 'threads', 1, 1, 1024),
      maxBatch: intOption(values['max-batch'], 'max-batch', DEFAULTS.maxBatch, 1, 4096),
      maxWaitMs: floatOption(values['max-wait-ms'], 'max-wait-ms', DEFAULTS.maxWaitMs, 0, 10_000),
      maxQueue: intOption(values['max-queue'], 'max-queue', DEFAULTS.maxQueue, 1, 1_000_000),
      maxBodyBytes: intOption(values['max-body-bytes'], 'max-body-bytes', DEFAULTS.maxBodyBytes, 1, 2 ** 31 - 1),
      maxPixels: intOption(values['max-pixels'], 'max-pixels', DEFAULTS.maxPixels, 1),
      defaultTopk: intOption(values.topk, 'topk', DEFAULTS.defaultTopk, 1),
      drainTimeoutMs: intOption(values['drain-timeout-ms'], 'drain-timeout-ms', DEFAULTS.drainTimeoutMs, 0),
      imgSize: values['img-size'] === undefined ? undefined : intOption(values['img-size'], 'img-size', 224, 1, 8192),
      logger: { level: choiceOption(values['log-level'], 'log-level', LOG_LEVELS, 'info') },
    });
    const log = server.app.fastify.log;
    const info = server.model.info;
    log.info({ url: server.url, model, arch: info.arch, precision: info.precision, device: info.device }, 'listening');

    return new Promise<number>((resolve) => {
      const stop = (signal: NodeJS.Signals): void => {
        log.info({ signal }, 'draining: no new connections, finishing requests in flight');
        process.off('SIGTERM', stop);
        process.off('SIGINT', stop);
        server.close().then(
          (drained) => {
            log.info({ drained }, drained ? 'drained, exiting' : 'drain timed out: connections were cut');
            resolve(drained ? 0 : 1);
          },
          (e: unknown) => {
            log.error({ err: e }, 'error while closing');
            resolve(1);
          },
        );
      };
      process.on('SIGTERM', stop);
      process.on('SIGINT', stop);
    });
  },
};
