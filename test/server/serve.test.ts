// Issue 8's acceptance, end to end: `ptq4vm serve` on the embedded model in a child process;
// real Fashion-MNIST PNGs at concurrency 32 predict what `ptq4vm eval` predicts; hostile bodies
// get 4xx and the server lives on; SIGTERM drains the requests in flight and exits 0.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, test } from 'node:test';
import { packageRoot } from '../../lib/backend/addon.js';
import { bombPng, errorOf, fmnistPngs, jpegOf, lyingPng, pool, post, type FmnistPngs } from './bodies.js';

const N = 256;
const BIN = join(packageRoot(), 'bin', 'ptq4vm.js');

function run(args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stderr }));
  });
}

interface Server {
  child: ChildProcess;
  url: string;
  logs: Record<string, unknown>[];
  exited: Promise<number | null>;
  stderr: () => string;
}

async function startServe(args: string[]): Promise<Server> {
  const child = spawn(process.execPath, [BIN, 'serve', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: Record<string, unknown>[] = [];
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      let entry: Record<string, unknown>;
      try {
        entry = JSON.parse(line) as Record<string, unknown>;
      } catch {
        reject(new Error(`server printed a line that is not JSON: ${line}`));
        return;
      }
      logs.push(entry);
      if (entry.msg === 'listening') resolve(entry.url as string);
    });
    void exited.then((code) => reject(new Error(`server exited (${code}) before listening: ${stderr}`)));
  });
  return { child, url, logs, exited, stderr: () => stderr };
}

describe('ptq4vm serve (vim-fmnist, child process)', () => {
  let dir: string;
  let server: Server;
  let data: FmnistPngs;
  let evalPreds: number[];
  let requestsSent = 0;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ptq4vm-serve-'));
    const predsFile = join(dir, 'preds.json');
    const [s, ev, d] = await Promise.all([
      startServe(['--model', 'vim-fmnist', '--port', '0', '--max-batch', '32', '--max-wait-ms', '5',
        '--max-pixels', '4000000', '--max-body-bytes', '1000000']),
      run(['eval', '--model', 'vim-fmnist', '--data', 'fmnist', '--limit', String(N), '--save-preds', predsFile]),
      fmnistPngs(N),
    ]);
    server = s;
    data = d;
    assert.equal(ev.code, 0, ev.stderr);
    evalPreds = (JSON.parse(await readFile(predsFile, 'utf8')) as { pred: number[] }).pred;
    assert.equal(evalPreds.length, N);
  });
  after(async () => {
    if (server && server.child.exitCode === null) server.child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });

  test(`${N} real Fashion-MNIST PNGs at concurrency 32: all 200, predictions equal to eval's`, async () => {
    const replies = await pool(N, 32, (i) => post(`${server.url}/v1/classify`, data.pngs[i], 'image/png'));
    requestsSent += N;
    const preds = replies.map((r, i) => {
      assert.equal(r.status, 200, `image ${i}: ${r.text}`);
      const top = (r.body as { top: { class: number; label: string; prob: number }[] }).top;
      assert.equal(top.length, 5);
      assert.equal(typeof top[0]!.label, 'string');
      return top[0]!.class;
    });
    const differ = preds.map((p, i) => (p === evalPreds[i] ? -1 : i)).filter((i) => i >= 0);
    assert.deepEqual(differ, [], `predictions differ from eval's at images ${differ.join(', ')}`);
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    const count = Number(/^ptq4vm_batch_size_count (\d+)$/m.exec(metrics)![1]);
    const sum = Number(/^ptq4vm_batch_size_sum (\d+)$/m.exec(metrics)![1]);
    assert.equal(sum, N);
    assert.ok(count < N, `no request was batched with another (${count} forwards)`);
  });

  test('hostile bodies: each 4xx with a JSON error, and the server still answers', async () => {
    const png = data.pngs[0]!;
    const u = `${server.url}/v1/classify`;
    const cases: Array<[string, () => ReturnType<typeof post>, number]> = [
      ['empty', () => post(u, new Uint8Array(0), 'image/png'), 400],
      ['not an image', () => post(u, Buffer.from('<html>hello</html>'), 'application/octet-stream'), 400],
      ['truncated', () => post(u, png.subarray(0, png.length >> 1), 'image/png'), 400],
      ['lying header', () => post(u, lyingPng(100_000, 100_000), 'image/png'), 400],
      ['bomb', async () => post(u, await bombPng(2500), 'image/png'), 400],
      ['too large', () => post(u, Buffer.alloc(1_500_000, 7), 'application/octet-stream'), 413],
      ['wrong type', () => post(u, png, 'text/plain'), 415],
      ['mismatch', async () => post(u, await jpegOf(png), 'image/webp'), 400],
    ];
    for (const [what, send, status] of cases) {
      const r = await send();
      requestsSent++;
      assert.equal(r.status, status, `${what}: ${r.text}`);
      assert.equal(errorOf(r).status, status);
    }
    assert.equal((await fetch(`${server.url}/healthz`)).status, 200);
    const ok = await post(u, png, 'image/png');
    requestsSent += 2;
    assert.equal(ok.status, 200);
    assert.equal((ok.body as { top: { class: number }[] }).top[0]!.class, evalPreds[0]);
    const info = await (await fetch(`${server.url}/v1/model`)).json() as Record<string, unknown>;
    requestsSent++;
    assert.equal(info.precision, 'fp32');
    assert.equal((info.config as { img_size: number }).img_size, 28);
  });

  test('SIGTERM: requests in flight finish with 200, then a clean exit 0', async () => {
    const scrape = async (): Promise<{ inflight: number; done: number }> => {
      const text = await (await fetch(`${server.url}/metrics`)).text();
      requestsSent++;
      const done = /^ptq4vm_http_requests_total\{code="200",route="\/v1\/classify"\} (\d+)$/m.exec(text);
      return { inflight: Number(/^ptq4vm_inflight_requests (\d+)$/m.exec(text)![1]), done: Number(done?.[1] ?? 0) };
    };
    const base = (await scrape()).done;
    const inFlight = data.pngs.slice(0, 64).map((p) => post(`${server.url}/v1/classify`, p, 'image/png'));
    // SIGTERM once the server has received all 64 (a request still connecting would be refused).
    for (;;) {
      const m = await scrape();
      if (m.inflight - 1 + m.done - base >= 64) break; // − 1: the scrape itself
    }
    const t0 = performance.now();
    server.child.kill('SIGTERM');
    const replies = await Promise.all(inFlight);
    requestsSent += 64;
    assert.deepEqual(replies.map((r) => r.status), new Array(64).fill(200));
    replies.forEach((r, i) => assert.equal((r.body as { top: { class: number }[] }).top[0]!.class, evalPreds[i]));
    assert.equal(await server.exited, 0, server.stderr());
    assert.ok(performance.now() - t0 < 10_000);
    assert.equal(server.stderr(), '');
    // One structured line per request, with its latency.
    const lines = server.logs.filter((l) => l.msg === 'request');
    assert.equal(lines.length, requestsSent + 1); // + the /metrics scrape of the first test
    // Some of the 64 were answered after the drain began.
    const draining = server.logs.findIndex((l) => l.msg?.toString().startsWith('draining'));
    assert.ok(draining > 0 && server.logs.slice(draining).some((l) => l.msg === 'request' && l.status === 200));
    for (const l of lines) {
      assert.equal(typeof l.status, 'number');
      assert.equal(typeof l.ms, 'number');
      assert.equal(typeof l.reqId, 'string');
    }
    const classified = lines.filter((l) => l.url === '/v1/classify' && l.status === 200);
    assert.ok(classified.every((l) => typeof l.batch === 'number' && typeof l.forwardMs === 'number'));
    assert.ok(server.logs.some((l) => l.msg === 'drained, exiting'));
  });
});
