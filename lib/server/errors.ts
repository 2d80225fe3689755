/**
 * Errors as HTTP answers: every failure becomes a status, a stable machine-readable code and a
 * one-line message, sent as JSON: {"error": {"status", "code", "message"}}.
 */
import { DataError } from '../data/errors.js';
import { InputError } from '../runtime/errors.js';
import { QueueFullError } from './batcher.js';

export class HttpError extends Error {
  override name = 'HttpError';
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    /** Seconds for a Retry-After header (503). */
    readonly retryAfterS?: number,
  ) {
    super(message.replace(/[\r\n]+/g, ' '));
  }
}

/** fastify's own error codes → ours. */
const FASTIFY_CODES: Readonly<Record<string, [number, string]>> = {
  FST_ERR_CTP_BODY_TOO_LARGE: [413, 'body_too_large'],
  FST_ERR_CTP_INVALID_MEDIA_TYPE: [415, 'unsupported_media_type'],
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: [400, 'bad_request'],
  FST_ERR_CTP_EMPTY_TYPE: [415, 'unsupported_media_type'],
  FST_ERR_CTP_INVALID_TYPE: [415, 'unsupported_media_type'],
};

export function toHttpError(e: unknown): HttpError {
  if (e instanceof HttpError) return e;
  if (e instanceof QueueFullError) return new HttpError(503, 'overloaded', e.message, e.retryAfterS);
  // A DataError names the body ("body: …"); the client knows which body it sent.
  if (e instanceof DataError) return new HttpError(400, 'bad_image', e.message.replace(/^body: /, ''));
  if (e instanceof InputError) return new HttpError(400, 'bad_request', e.message);
  const err = e as { code?: unknown; statusCode?: unknown; message?: unknown };
  const message = typeof err?.message === 'string' ? err.message : String(e);
  if (typeof err?.code === 'string' && Object.hasOwn(FASTIFY_CODES, err.code)) {
    const [status, code] = FASTIFY_CODES[err.code]!;
    if (status === 415) return new HttpError(status, code, `unsupported Content-Type: send the image as image/png, image/jpeg, image/webp or application/octet-stream`);
    return new HttpError(status, code, message);
  }
  if (typeof err?.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500) {
    return new HttpError(err.statusCode, 'bad_request', message);
  }
  return new HttpError(500, 'internal', message);
}

export function errorBody(h: HttpError): { error: { status: number; code: string; message: string } } {
  return { error: { status: h.status, code: h.code, message: h.message } };
}
