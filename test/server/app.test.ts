// The HTTP application on a stand-in model (a fixed random linear classifier over the real
// preprocessing), so routing, batching, limits and errors are tested without the inference engine.
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { topPredictions } from '../../lib/api.js';
import { FASHION_MNIST_CLASSES, makePreprocess, preprocessImageBuffer, resolveDataset } from '../../lib/data/index.js';
import { createApp, type App, type ServedModel } from '../../lib/server/index.js';
import { Tensor } from '../../lib/tensor/tensor.js';
import { bombPng, errorOf, fmnistPngs, jpegOf, lyingPng, pool, post, type FmnistPngs } from './bodies.js';

const CLASSES = 10;
const PIXELS = 28 * 28;

/** Seeded weights in [-1, 1). */
function weights(seed: number): Float32Array {
  const w = new Float32Array(CLASSES * PIXELS);
  let s = seed >>> 0;
  for (let i = 0; i < w.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    w[i] = s / 2 ** 31 - 1;
  }
  return w;
}

interface FakeModel extends ServedModel {
  batches: number[];
  delayMs: number;
  failNext: boolean;
}

function linearLogits(x: Float32Array, B: number, w: Float32Array): Float32Array {
  const out = new Float32Array(B * CLASSES);
  for (let b = 0; b < B; b++) {
    for (let c = 0; c < CLASSES; c++) {
      let acc = 0;
      for (let i = 0; i < PIXELS; i++) acc += x[b * PIXELS + i]! * w[c * PIXELS + i]!;
      out[b * CLASSES + c] = acc;
    }
  }
  return out;
}

function fakeModel(maxPixels: number): FakeModel {
  const preprocess = makePreprocess({ channels: 1, size: 28, resize: 28, mean: [0.286], std: [0.353] });
  const w = weights(7);
  const m: FakeModel = {
    batches: [],
    delayMs: 1,
    failNext: false,
    info: {
      arch: 'vim', config: { in_chans: 1, img_size: 28, num_classes: CLASSES }, parameters: w.length, seqLen: 50, classes: CLASSES,
      device: 'cpu', precision: 'fp32', quantization: null, normalize: { mean: [0.286], std: [0.353] }, labels: null, metadata: {},
    },
    inputShape: [1, 28, 28],
    preprocess,
    labels: FASHION_MNIST_CLASSES,
    path: '/models/fake.safetensors',
    async logits(images: Tensor) {
      const B = images.dim(0);
      m.batches.push(B);
      await sleep(m.delayMs);
      if (m.failNext) {
        m.failNext = false;
        throw new Error('kernel exploded');
      }
      return new Tensor('F32', [B, CLASSES], linearLogits(images.toFloat32().data, B, w));
    },
    preprocessImage: (bytes: Uint8Array, source?: string) => preprocessImageBuffer(bytes, preprocess, { maxPixels, source }),
  } as FakeModel;
  return m;
}

async function listen(app: App): Promise<string> {
  await app.fastify.listen({ host: '127.0.0.1', port: 0 });
  return `http://127.0.0.1:${(app.fastify.server.address() as AddressInfo).port}`;
}

/** Raw HTTP, for what fetch will not send (a lying Content-Length, chunked uploads). */
function rawPost(url: string, headers: Record<string, string>, chunks: Buffer[]): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.on('error', reject);
    for (const c of chunks) req.write(c);
    req.end();
  });
}

describe('server app (stand-in model)', () => {
  const MAX_PIXELS = 1_000_000;
  let data: FmnistPngs;
  let expected: number[];
  let model: FakeModel;
  let app: App;
  let url: string;

  before(async () => {
    data = await fmnistPngs(256);
    model = fakeModel(MAX_PIXELS);
    // What eval computes for the same images: the idx data set, batched, through the same model.
    const ds = await resolveDataset('fmnist');
    expected = [];
    for await (const b of ds.batches({ preprocess: model.preprocess, batchSize: 64, limit: 256 })) {
      const l = await model.logits(b.images);
      for (let i = 0; i < b.indices.length; i++) expected.push(topPredictions(l.data, CLASSES, i, 1, null)[0]!.class);
    }
    model.batches.length = 0;
    app = createApp(model, { maxBatch: 16, maxWaitMs: 3, maxQueue: 64, maxBodyBytes: 200_000, maxPixels: MAX_PIXELS, logger: false });
    url = await listen(app);
  });
  after(async () => {
    await app?.fastify.close();
  });

  test('256 real PNGs at concurrency 32: all 200, each its own prediction, batched', async () => {
    model.delayMs = 4;
    const replies = await pool(data.pngs.length, 32, (i) => post(`${url}/v1/classify?topk=3`, data.pngs[i], 'image/png'));
    for (const [i, r] of replies.entries()) {
      assert.equal(r.status, 200, `image ${i}: ${r.text}`);
      const top = (r.body as { top: { class: number; label: string; prob: number }[] }).top;
      assert.equal(top.length, 3);
      assert.equal(top[0]!.class, expected[i], `image ${i}`);
      assert.equal(top[0]!.label, FASHION_MNIST_CLASSES[top[0]!.class]);
      assert.ok(top[0]!.prob >= top[1]!.prob && top[1]!.prob >= top[2]!.prob && top[2]!.prob > 0);
      assert.ok(top.reduce((a, t) => a + t.prob, 0) <= 1 + 1e-9);
    }
    assert.equal(model.batches.reduce((a, b) => a + b, 0), 256);
    assert.ok(Math.max(...model.batches) <= 16, `batches ${model.batches}`);
    assert.ok(Math.max(...model.batches) > 1, `requests were never batched: ${model.batches}`);
    assert.ok(model.batches.length < 256 / 2, `${model.batches.length} forwards for 256 images`);
  });

  test('other content types: JPEG, WebP, octet-stream (sniffed)', async () => {
    const jpeg = await jpegOf(data.pngs[0]!);
    for (const [body, type] of [[jpeg, 'image/jpeg'], [jpeg, 'application/octet-stream'], [data.pngs[1]!, 'application/octet-stream'], [data.pngs[2]!, 'image/png; charset=binary']] as const) {
      const r = await post(`${url}/v1/classify`, body, type);
      assert.equal(r.status, 200, `${type}: ${r.text}`);
      assert.equal((r.body as { top: unknown[] }).top.length, 5);
    }
  });

  test('hostile bodies: each the right 4xx, as JSON; the server still answers', async () => {
    const png = data.pngs[0]!;
    const cases: Array<[string, Promise<{ status: number; text: string }>, number, string]> = [
      ['empty body', post(`${url}/v1/classify`, new Uint8Array(0), 'image/png'), 400, 'empty_body'],
      ['no body, no type', post(`${url}/v1/classify`, undefined, undefined), 400, 'empty_body'],
      ['text', post(`${url}/v1/classify`, Buffer.from('hello'), 'text/plain'), 415, 'unsupported_media_type'],
      ['json', post(`${url}/v1/classify`, Buffer.from('{"a":1}'), 'application/json'), 415, 'unsupported_media_type'],
      ['no content type', post(`${url}/v1/classify`, png, undefined), 415, 'unsupported_media_type'],
      ['not an image', post(`${url}/v1/classify`, Buffer.from('GIF89a not really'), 'application/octet-stream'), 400, 'bad_image'],
      ['random bytes as png', post(`${url}/v1/classify`, Buffer.from(weights(3).buffer), 'image/png'), 400, 'bad_image'],
      ['truncated png', post(`${url}/v1/classify`, png.subarray(0, png.length - 30), 'image/png'), 400, 'bad_image'],
      ['png header only', post(`${url}/v1/classify`, png.subarray(0, 40), 'image/png'), 400, 'bad_image'],
      ['lying header (60000×60000)', post(`${url}/v1/classify`, lyingPng(60000, 60000), 'image/png'), 400, 'bad_image'],
      ['lying header (28×28, no data)', post(`${url}/v1/classify`, lyingPng(28, 28), 'image/png'), 400, 'bad_image'],
      ['jpeg sent as png', jpegOf(png).then((j) => post(`${url}/v1/classify`, j, 'image/png')), 400, 'content_type_mismatch'],
      ['bad topk', post(`${url}/v1/classify?topk=0`, png, 'image/png'), 400, 'bad_request'],
      ['bad topk text', post(`${url}/v1/classify?topk=abc`, png, 'image/png'), 400, 'bad_request'],
      ['too large', post(`${url}/v1/classify`, Buffer.concat([png, Buffer.alloc(300_000)]), 'image/png'), 413, 'body_too_large'],
      ['unknown route', post(`${url}/v2/classify`, png, 'image/png'), 404, 'not_found'],
    ];
    for (const [what, p, status, code] of cases) {
      const r = await p;
      assert.equal(r.status, status, `${what}: ${r.text}`);
      const e = errorOf({ ...r, headers: new Headers(), body: JSON.parse(r.text) });
      assert.equal(e.code, code, what);
      assert.equal(e.status, status);
      assert.ok(e.message.length > 0 && !e.message.includes('\n'), what);
    }
    const health = await fetch(`${url}/healthz`);
    assert.equal(health.status, 200);
    assert.equal((await post(`${url}/v1/classify`, png, 'image/png')).status, 200);
  });

  test('decompression bomb: refused before decoding, by its header', async () => {
    const bomb = await bombPng(3000); // 9 MP in a few kB
    assert.ok(bomb.length < 200_000);
    const r = await post(`${url}/v1/classify`, bomb, 'image/png');
    assert.equal(r.status, 400, r.text);
    assert.match(errorOf(r).message, /over the limit of 1000000/);
  });

  test('oversized uploads: by Content-Length and chunked', async () => {
    const big = await rawPost(`${url}/v1/classify`, { 'content-type': 'image/png', 'content-length': String(10_000_000) }, [data.pngs[0]!]);
    assert.equal(big.status, 413, big.text);
    const chunked = await rawPost(`${url}/v1/classify`, { 'content-type': 'image/png', 'transfer-encoding': 'chunked' },
      Array.from({ length: 30 }, () => Buffer.alloc(10_000, 1)));
    assert.equal(chunked.status, 413, chunked.text);
    assert.equal((await fetch(`${url}/healthz`)).status, 200);
  });

  test('a failing forward: 500 for the requests of that batch only', async () => {
    model.failNext = true;
    const r = await post(`${url}/v1/classify`, data.pngs[0]!, 'image/png');
    assert.equal(r.status, 500);
    assert.equal(errorOf(r).code, 'internal');
    assert.equal((await post(`${url}/v1/classify`, data.pngs[0]!, 'image/png')).status, 200);
  });

  test('GET /v1/model and /healthz', async () => {
    const m = await (await fetch(`${url}/v1/model`)).json() as Record<string, unknown>;
    assert.equal(m.name, 'fake.safetensors');
    assert.equal(m.classes, 10);
    assert.equal(m.precision, 'fp32');
    assert.deepEqual(m.labels, FASHION_MNIST_CLASSES);
    assert.deepEqual(m.batching, { maxBatch: 16, maxWaitMs: 3, maxQueue: 64 });
    assert.deepEqual((m.preprocess as { size: number }).size, 28);
    assert.deepEqual(await (await fetch(`${url}/healthz`)).json(), { status: 'ok' });
  });

  test('GET /metrics: Prometheus text with requests, latency, batch sizes, queue depth', async () => {
    const res = await fetch(`${url}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    const lines = text.trim().split('\n');
    for (const l of lines) assert.match(l, /^(# (HELP|TYPE) \w+ .+|\w+(\{[^}]*\})? [-+0-9.eE]+|\w+(\{[^}]*\})? \+Inf)$/, l);
    const value = (series: string): number => {
      const l = lines.find((x) => x.startsWith(series + ' '));
      assert.ok(l, `missing ${series}`);
      return Number(l.slice(series.length + 1));
    };
    assert.ok(value('ptq4vm_http_requests_total{code="200",route="/v1/classify"}') >= 256 + 4);
    assert.ok(value('ptq4vm_http_requests_total{code="415",route="/v1/classify"}') >= 3);
    assert.ok(value('ptq4vm_http_requests_total{code="413",route="/v1/classify"}') >= 2);
    assert.equal(value('ptq4vm_batch_size_count'), model.batches.length);
    assert.equal(value('ptq4vm_batch_size_sum'), model.batches.reduce((a, b) => a + b, 0));
    assert.equal(value('ptq4vm_batch_size_bucket{le="+Inf"}'), model.batches.length);
    assert.equal(value('ptq4vm_batch_size_bucket{le="1"}'), model.batches.filter((b) => b === 1).length);
    assert.ok(value('ptq4vm_http_request_duration_seconds_count{route="/v1/classify"}') >= 256);
    assert.equal(value('ptq4vm_queue_depth'), 0);
  });
});

describe('server app under overload and shutdown', () => {
  test('a full queue answers 503 with Retry-After; the others 200', async () => {
    const model = fakeModel(1e6);
    model.delayMs = 150;
    const app = createApp(model, { maxBatch: 2, maxWaitMs: 1, maxQueue: 3, logger: false });
    const url = await listen(app);
    try {
      const { pngs } = await fmnistPngs(24);
      const replies = await Promise.all(pngs.map((p) => post(`${url}/v1/classify`, p, 'image/png')));
      const busy = replies.filter((r) => r.status === 503);
      assert.ok(busy.length > 0, 'no request was refused');
      assert.ok(replies.every((r) => r.status === 200 || r.status === 503), replies.map((r) => r.status).join(','));
      for (const r of busy) {
        assert.equal(errorOf(r).code, 'overloaded');
        const retry = Number(r.headers.get('retry-after'));
        assert.ok(Number.isInteger(retry) && retry >= 1, `Retry-After ${r.headers.get('retry-after')}`);
      }
      assert.ok(replies.filter((r) => r.status === 200).length >= 3);
    } finally {
      await app.fastify.close();
    }
  });

  test('clients that hang up mid-request leave no trace in the gauges', async () => {
    const model = fakeModel(1e6);
    model.delayMs = 200;
    const app = createApp(model, { maxBatch: 4, maxWaitMs: 1, logger: false });
    const url = await listen(app);
    try {
      const { pngs } = await fmnistPngs(6);
      const ctl = new AbortController();
      const gone = pngs.map((p) => fetch(`${url}/v1/classify`, { method: 'POST', body: new Uint8Array(p), headers: { 'content-type': 'image/png' }, signal: ctl.signal }));
      await sleep(60);
      ctl.abort();
      await Promise.allSettled(gone);
      await sleep(600); // the batches they were in finish
      const text = await (await fetch(`${url}/metrics`)).text();
      assert.match(text, /^ptq4vm_inflight_requests 1$/m); // the scrape itself
      assert.match(text, /^ptq4vm_queue_depth 0$/m);
      assert.equal((await post(`${url}/v1/classify`, pngs[0]!, 'image/png')).status, 200);
    } finally {
      const t0 = performance.now();
      await app.fastify.close();
      assert.ok(performance.now() - t0 < 2000, `close took ${(performance.now() - t0).toFixed(0)} ms`);
    }
  });

  test('close() lets requests in flight finish, then refuses connections', async () => {
    const model = fakeModel(1e6);
    model.delayMs = 300;
    const app = createApp(model, { maxBatch: 8, maxWaitMs: 1, logger: false });
    const url = await listen(app);
    const { pngs } = await fmnistPngs(6);
    // A client that connects and never sends a request must not hold the close.
    const silent = connect((app.fastify.server.address() as AddressInfo).port, '127.0.0.1');
    silent.on('error', () => undefined);
    const inFlight = pngs.map((p) => post(`${url}/v1/classify`, p, 'image/png'));
    await sleep(100);
    const t0 = performance.now();
    await app.fastify.close();
    // Kept-alive connections must not hold the close until their idle timeout.
    assert.ok(performance.now() - t0 < 5000, `close took ${(performance.now() - t0).toFixed(0)} ms`);
    const replies = await Promise.all(inFlight);
    assert.deepEqual(replies.map((r) => r.status), [200, 200, 200, 200, 200, 200]);
    await assert.rejects(fetch(`${url}/healthz`));
  });
});
