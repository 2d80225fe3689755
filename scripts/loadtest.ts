/**
 * Loopback load test of `ptq4vm serve`: fires real Fashion-MNIST PNGs at POST /v1/classify from
 * `--concurrency` keep-alive connections and reports throughput and latency percentiles.
 *
 *   npm run build && node dist/scripts/loadtest.js [--model vim-fmnist] [--concurrency 32] [--requests 2000]
 *   node dist/scripts/loadtest.js --url http://127.0.0.1:8080 ...   # an already running server
 *
 * Without --url it starts its own server (a child process, on a free port) and stops it with
 * SIGTERM at the end. Bounded by design: loopback addresses only, at most 100,000 requests,
 * 300 s and 1,024 connections.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { Agent, request } from 'node:http';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { packageRoot } from '../lib/backend/addon.js';
import { builtinDatasetPath, readIdxImages } from '../lib/data/index.js';

const LIMITS = { requests: 100_000, seconds: 300, concurrency: 1024 };

function fail(msg: string): never {
  process.stderr.write(`loadtest: ${msg}\n`);
  process.exit(2);
}

function int(v: string | undefined, name: string, def: number, max: number): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > max) fail(`--${name} must be an integer in [1, ${max}], got ${JSON.stringify(v)}`);
  return n;
}

function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

async function fmnistPngs(n: number): Promise<Buffer[]> {
  const idx = await readIdxImages(builtinDatasetPath('fmnist')!);
  const per = idx.rows * idx.cols;
  return Promise.all(Array.from({ length: Math.min(n, idx.count) }, (_, i) =>
    sharp(Buffer.from(idx.pixels.subarray(i * per, (i + 1) * per)), { raw: { width: idx.cols, height: idx.rows, channels: 1 } }).png().toBuffer()));
}

async function startServer(args: string[]): Promise<{ child: ChildProcess; url: string; exited: Promise<number | null> }> {
  const child = spawn(process.execPath, [join(packageRoot(), 'bin', 'ptq4vm.js'), 'serve', '--port', '0', ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  const url = await new Promise<string>((resolve, reject) => {
    // Drain stdout (one log line per request) so the server never blocks on a full pipe.
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (!line.includes('"listening"')) return;
      try {
        resolve((JSON.parse(line) as { url: string }).url);
      } catch {
        /* not the line we wait for */
      }
    });
    void exited.then((code) => reject(new Error(`server exited (code ${code}) before listening`)));
  });
  return { child, url, exited };
}

interface Result {
  status: number;
  ms: number;
}

function postImage(agent: Agent, url: URL, body: Buffer): Promise<Result> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const req = request(url, { method: 'POST', agent, headers: { 'content-type': 'image/png', 'content-length': body.length } }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, ms: performance.now() - t0 }));
    });
    req.on('error', () => resolve({ status: 0, ms: performance.now() - t0 }));
    req.end(body);
  });
}

/** Nearest-rank percentile of sorted values. */
function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

async function scrape(base: string): Promise<{ batches: number; images: number }> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const get = (name: string): number => Number(new RegExp(`^${name} ([0-9.e+-]+)$`, 'm').exec(text)?.[1] ?? NaN);
  return { batches: get('ptq4vm_batch_size_count'), images: get('ptq4vm_batch_size_sum') };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      url: { type: 'string' }, model: { type: 'string' }, concurrency: { type: 'string' }, requests: { type: 'string' },
      'duration-s': { type: 'string' }, images: { type: 'string' }, warmup: { type: 'string' },
      'max-batch': { type: 'string' }, 'max-wait-ms': { type: 'string' }, threads: { type: 'string' }, json: { type: 'boolean' },
    },
    strict: true,
  });
  const concurrency = int(values.concurrency, 'concurrency', 32, LIMITS.concurrency);
  const total = int(values.requests, 'requests', 2000, LIMITS.requests);
  const seconds = int(values['duration-s'], 'duration-s', 60, LIMITS.seconds);
  const warmup = values.warmup === '0' ? 0 : int(values.warmup, 'warmup', 64, 10_000);
  const pngs = await fmnistPngs(int(values.images, 'images', 512, 10_000));

  let server: Awaited<ReturnType<typeof startServer>> | undefined;
  let base: string;
  if (values.url !== undefined) {
    if (values.model !== undefined) fail('give --url or --model, not both');
    let u: URL;
    try {
      u = new URL(values.url);
    } catch {
      fail(`--url is not a URL: ${values.url}`);
    }
    if (u.protocol !== 'http:' || !isLoopback(u.hostname)) fail(`--url must be http:// on a loopback address (127.0.0.0/8, ::1, localhost), got ${values.url}`);
    base = u.origin;
  } else {
    const args = ['--model', values.model ?? 'vim-fmnist'];
    if (values['max-batch']) args.push('--max-batch', values['max-batch']);
    if (values['max-wait-ms']) args.push('--max-wait-ms', values['max-wait-ms']);
    if (values.threads) args.push('--threads', values.threads);
    server = await startServer(args);
    base = server.url;
  }
  const target = new URL('/v1/classify', base);
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  const deadline = performance.now() + seconds * 1000;

  try {
    if (warmup > 0) await Promise.all(Array.from({ length: warmup }, (_, i) => postImage(agent, target, pngs[i % pngs.length]!)));
    const before = await scrape(base);
    const results: Result[] = [];
    let next = 0;
    const t0 = performance.now();
    await Promise.all(Array.from({ length: concurrency }, async () => {
      while (next < total && performance.now() < deadline) {
        const i = next++;
        results.push(await postImage(agent, target, pngs[i % pngs.length]!));
      }
    }));
    const wall = (performance.now() - t0) / 1000;
    const after = await scrape(base);
    const ok = results.filter((r) => r.status === 200);
    const lat = ok.map((r) => r.ms).sort((a, b) => a - b);
    const byStatus: Record<string, number> = {};
    for (const r of results) byStatus[r.status || 'error'] = (byStatus[r.status || 'error'] ?? 0) + 1;
    const report = {
      url: target.href, concurrency, requests: results.length, ok: ok.length, statuses: byStatus,
      seconds: Number(wall.toFixed(3)), throughput_rps: Number((ok.length / wall).toFixed(1)),
      latency_ms: {
        p50: Number(percentile(lat, 50).toFixed(2)), p90: Number(percentile(lat, 90).toFixed(2)),
        p99: Number(percentile(lat, 99).toFixed(2)), max: Number((lat.at(-1) ?? NaN).toFixed(2)),
        mean: Number((lat.reduce((a, b) => a + b, 0) / (lat.length || 1)).toFixed(2)),
      },
      mean_batch: Number(((after.images - before.images) / (after.batches - before.batches)).toFixed(2)),
      client_cpus: cpus().length,
    };
    if (values.json) process.stdout.write(JSON.stringify(report) + '\n');
    else {
      process.stdout.write(
        `${report.requests} requests to ${report.url} at concurrency ${concurrency} in ${report.seconds} s: ` +
        `${report.ok} ok ${JSON.stringify(byStatus)}\n` +
        `throughput ${report.throughput_rps} req/s; latency p50 ${report.latency_ms.p50} ms, p90 ${report.latency_ms.p90} ms, ` +
        `p99 ${report.latency_ms.p99} ms, max ${report.latency_ms.max} ms; mean batch ${report.mean_batch}\n`,
      );
    }
  } finally {
    agent.destroy();
    if (server) {
      server.child.kill('SIGTERM');
      const code = await server.exited;
      if (code !== 0) process.stderr.write(`loadtest: the server exited with code ${code}\n`);
    }
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`loadtest: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
