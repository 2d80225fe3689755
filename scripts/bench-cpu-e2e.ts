// CPU end-to-end timing of a random full-size Vim (dev tool of the CPU kernels):
//   node dist/scripts/bench-cpu-e2e.js [--arch vim-ti] [--batch 8] [--iters 3] [--profile] [--kernels] [--micro m]
//                                      [--no-fuse-dt] [--precision P | --fake] [--interleave]
// Prints, per precision (fp32, int8, fake-quant with --fake), the median wall time and the median
// process CPU time of one forward (the CPU time is what to compare on a loaded machine: with
// T pool threads an unloaded forward takes about cpu/T of wall, spinning workers included),
// and with --profile the CPU time spent in each ModelOps method (both threads). Last line: one JSON object.
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { cpuKernels } from '../lib/backend/cpu-kernels.js';
import type { Mat, ModelOps } from '../lib/models/ops.js';
import { vimForward } from '../lib/models/vim/graph.js';
import { isVimArch, quantizeForSpeed, randomImages, randomVimModel } from '../lib/models/vim/random.js';
import { CpuExecutor, type QuantMode } from '../lib/runtime/cpu-executor.js';
import type { Precision } from '../lib/runtime/forward.js';
import { Tensor } from '../lib/tensor/tensor.js';

const { values } = parseArgs({
  options: {
    arch: { type: 'string', default: 'vim-ti' }, batch: { type: 'string', default: '8' }, iters: { type: 'string', default: '3' },
    warmup: { type: 'string', default: '1' }, profile: { type: 'boolean', default: false }, fake: { type: 'boolean', default: false },
    precision: { type: 'string' }, kernels: { type: 'boolean', default: false }, micro: { type: 'string' },
    'no-fuse-dt': { type: 'boolean', default: false }, interleave: { type: 'boolean', default: false },
  },
});
const arch = values.arch!;
if (!isVimArch(arch)) throw new Error(`unknown arch ${arch}`);
const B = Number(values.batch);
const iters = Number(values.iters);
const warmup = Number(values.warmup);

const QUANT_MODE: Record<string, QuantMode> = { fp32: 'off', int8: 'int8', 'fake-quant': 'fake' };

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

/** Wraps every method of `ops` to add its process CPU time to `acc` (by method name). */
function instrument(ops: ModelOps<Mat>, acc: Map<string, number>): void {
  let depth = 0;
  const target = ops as unknown as Record<string, unknown>;
  const proto = Object.getPrototypeOf(ops) as Record<string, unknown>;
  for (const name of Object.getOwnPropertyNames(proto)) {
    const f = proto[name];
    if (name === 'constructor' || typeof f !== 'function') continue;
    // Only the outermost call is counted (int8Linear runs inside linear).
    target[name] = (...args: unknown[]) => {
      if (depth++ > 0) {
        try {
          return (f as (...a: unknown[]) => unknown).apply(ops, args);
        } finally {
          depth--;
        }
      }
      const c0 = process.cpuUsage();
      try {
        return (f as (...a: unknown[]) => unknown).apply(ops, args);
      } finally {
        depth--;
        const c = process.cpuUsage(c0);
        acc.set(name, (acc.get(name) ?? 0) + (c.user + c.system) / 1000);
      }
    };
  }
}

/**
 * Wraps every function of the CPU kernel object to add its CPU time to `acc`, keyed by name
 * (and M×N×K for the GEMMs), so a profile separates the kernels from the JS around them.
 */
function instrumentKernels(acc: Map<string, number>): void {
  const k = cpuKernels() as unknown as Record<string, unknown>;
  for (const name of Object.keys(k)) {
    const f = k[name];
    if (typeof f !== 'function' || name.endsWith('Ref')) continue;
    k[name] = (...args: unknown[]) => {
      const c0 = process.cpuUsage();
      const w0 = performance.now();
      try {
        return (f as (...a: unknown[]) => unknown)(...args);
      } finally {
        const c = process.cpuUsage(c0);
        kwall.set('(all kernels)', (kwall.get('(all kernels)') ?? 0) + performance.now() - w0);
        let key = name;
        if (name === 'gemmF32') key += ` ${args[2]}x${args[3]}x${args[4]}`;
        else if (name === 'gemmU8S8F32') key += ` ${args[0]}x${args[1]}x${args[2]}`;
        acc.set(key, (acc.get(key) ?? 0) + (c.user + c.system) / 1000);
        kwall.set(key, (kwall.get(key) ?? 0) + performance.now() - w0);
      }
    };
  }
}
/** Wall time per kernel (--kernels), next to the CPU time. */
const kwall = new Map<string, number>();

const model = randomVimModel(arch, 0);
quantizeForSpeed(model, 8, 8, { seed: 0 });
const images = randomImages(model, B, 1000 + B);
// --micro m: the batch goes through the network m images at a time (what a graph-level
// micro-batching would do), to measure how much the smaller working set saves.
const micro = values.micro ? Number(values.micro) : B;
const imageSize = images.data.length / B;
const microBatches = Array.from({ length: Math.ceil(B / micro) }, (_, i) => {
  const n = Math.min(micro, B - i * micro);
  return new Tensor('F32', [n, ...images.shape.slice(1)], images.data.subarray(i * micro * imageSize, (i * micro + n) * imageSize));
});
const info = cpuKernels().runtimeInfo();
const machine = `${cpus()[0]?.model.trim()}, ${cpus().length} CPUs, ISA ${info.isa}, ${info.threads} pool threads`;
console.log(`${arch} batch ${B}${micro < B ? ` in micro-batches of ${micro}` : ''}: ${machine}`);

const precisions: Precision[] = values.precision ? [values.precision as Precision] : values.fake ? ['fp32', 'int8', 'fake-quant'] : ['fp32', 'int8'];
const result: Record<string, unknown> = { bench: 'cpu-e2e', arch, batch: B, micro, machine };
const kacc = new Map<string, number>();
if (values.kernels) instrumentKernels(kacc);
// --interleave: one forward of each precision in turn, so that every precision sees the same
// load from other jobs (a fairer ratio on a shared machine than one precision after another).
if (values.interleave) {
  const ops = precisions.map((p) => new CpuExecutor({ quantMode: QUANT_MODE[p], fuseDtProj: !values['no-fuse-dt'] }) as unknown as ModelOps<Mat>);
  const once = (o: ModelOps<Mat>): { wall: number; cpu: number } => {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    for (const mb of microBatches) {
      o.toHost(vimForward(o, model, mb));
      o.endForward();
    }
    const c = process.cpuUsage(c0);
    return { wall: performance.now() - t0, cpu: (c.user + c.system) / 1000 };
  };
  for (const o of ops) for (let i = 0; i < warmup; i++) once(o);
  const runs = precisions.map(() => [] as { wall: number; cpu: number }[]);
  for (let i = 0; i < iters; i++) ops.forEach((o, j) => runs[j]!.push(once(o)));
  precisions.forEach((p, j) => {
    const r = runs[j]!;
    const wall = median(r.map((x) => x.wall));
    console.log(`  ${p.padEnd(10)} wall ${wall.toFixed(1)} ms (${(wall / B).toFixed(1)} ms/image), cpu ${median(r.map((x) => x.cpu)).toFixed(1)} ms; runs ${r.map((x) => x.wall.toFixed(0)).join(' ')}`);
    result[`${p}_ms`] = Math.round(wall * 10) / 10;
    result[`${p}_cpu_ms`] = Math.round(median(r.map((x) => x.cpu)) * 10) / 10;
    result[`${p}_min_ms`] = Math.round(Math.min(...r.map((x) => x.wall)) * 10) / 10;
    result[`${p}_min_cpu_ms`] = Math.round(Math.min(...r.map((x) => x.cpu)) * 10) / 10;
  });
  // Per-iteration ratios (neighbouring forwards share the machine's state), then their median.
  const fi = precisions.indexOf('fp32'), ii = precisions.indexOf('int8');
  if (fi >= 0 && ii >= 0) result.speedup_paired = Math.round(median(runs[fi]!.map((x, i) => x.wall / runs[ii]![i]!.wall)) * 100) / 100;
}
for (const precision of values.interleave ? [] : precisions) {
  // --no-fuse-dt: INT8 dt_proj as a separate GEMM (the executor's fuseDtProj off), for A/B runs.
  const runner = { ops: new CpuExecutor({ quantMode: QUANT_MODE[precision], fuseDtProj: !values['no-fuse-dt'] }) as unknown as ModelOps<Mat> };
  const acc = new Map<string, number>();
  const once = (): { wall: number; cpu: number } => {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    try {
      for (const mb of microBatches) {
        runner.ops.toHost(vimForward(runner.ops, model, mb));
        runner.ops.endForward();
      }
    } finally {
      runner.ops.endForward();
    }
    const wall = performance.now() - t0;
    const c = process.cpuUsage(c0);
    return { wall, cpu: (c.user + c.system) / 1000 };
  };
  for (let i = 0; i < warmup; i++) once();
  if (values.profile) instrument(runner.ops, acc);
  kacc.clear();
  kwall.clear();
  const runs = Array.from({ length: iters }, once);
  const wall = median(runs.map((r) => r.wall));
  const cpu = median(runs.map((r) => r.cpu));
  console.log(`  ${precision.padEnd(10)} wall ${wall.toFixed(1)} ms (${(wall / B).toFixed(1)} ms/image), cpu ${cpu.toFixed(1)} ms; runs ${runs.map((r) => r.wall.toFixed(0)).join(' ')}`);
  if (values.profile) {
    const total = [...acc.values()].reduce((a, b) => a + b, 0);
    for (const [k, v] of [...acc.entries()].sort((a, b) => b[1] - a[1])) {
      if (v / iters >= 0.05) console.log(`      ${k.padEnd(18)} ${(v / iters).toFixed(1).padStart(8)} ms cpu  ${((100 * v) / total).toFixed(1)}%`);
    }
  }
  if (values.kernels) {
    for (const [k, v] of [...kacc.entries()].sort((a, b) => b[1] - a[1])) {
      if (v / iters >= 0.05) console.log(`      ${k.padEnd(30)} ${(v / iters).toFixed(1).padStart(8)} ms cpu ${((kwall.get(k) ?? 0) / iters).toFixed(1).padStart(8)} ms wall`);
    }
    console.log(`      ${'(all kernels)'.padEnd(30)} ${''.padStart(8)}        ${((kwall.get('(all kernels)') ?? 0) / iters).toFixed(1).padStart(8)} ms wall`);
  }
  result[`${precision}_ms`] = Math.round(wall * 10) / 10;
  result[`${precision}_cpu_ms`] = Math.round(cpu * 10) / 10;
  // The fastest run: the least disturbed by other jobs on a shared machine.
  result[`${precision}_min_ms`] = Math.round(Math.min(...runs.map((r) => r.wall)) * 10) / 10;
  result[`${precision}_min_cpu_ms`] = Math.round(Math.min(...runs.map((r) => r.cpu)) * 10) / 10;
}
if (result.fp32_ms && result.int8_ms) {
  result.speedup = Math.round(((result.fp32_ms as number) / (result.int8_ms as number)) * 100) / 100;
  result.speedup_cpu = Math.round(((result.fp32_cpu_ms as number) / (result.int8_cpu_ms as number)) * 100) / 100;
  result.speedup_min = Math.round(((result.fp32_min_ms as number) / (result.int8_min_ms as number)) * 100) / 100;
  result.speedup_min_cpu = Math.round(((result.fp32_min_cpu_ms as number) / (result.int8_min_cpu_ms as number)) * 100) / 100;
}
console.log(JSON.stringify(result));
