// CPU end-to-end timing of a random full-size Vim (dev tool of the CPU kernels):
//   node dist/scripts/bench-cpu-e2e.js [--arch vim-ti] [--batch 8] [--iters 3] [--profile]
// Prints, per precision (fp32, int8, fake-quant with --fake), the median wall time and the median
// process CPU time of one forward (the CPU time is what to compare on a loaded machine: with
// T pool threads an unloaded forward takes about cpu/T of wall, spinning workers included),
// and with --profile the wall time spent in each ModelOps method. Last line: one JSON object.
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { cpuKernels } from '../lib/backend/cpu-kernels.js';
import type { Mat, ModelOps } from '../lib/models/ops.js';
import { vimForward } from '../lib/models/vim/graph.js';
import { isVimArch, quantizeForSpeed, randomImages, randomVimModel } from '../lib/models/vim/random.js';
import { ModelRunner, type Precision } from '../lib/runtime/forward.js';

const { values } = parseArgs({
  options: {
    arch: { type: 'string', default: 'vim-ti' }, batch: { type: 'string', default: '8' }, iters: { type: 'string', default: '3' },
    warmup: { type: 'string', default: '1' }, profile: { type: 'boolean', default: false }, fake: { type: 'boolean', default: false },
    precision: { type: 'string' },
  },
});
const arch = values.arch!;
if (!isVimArch(arch)) throw new Error(`unknown arch ${arch}`);
const B = Number(values.batch);
const iters = Number(values.iters);
const warmup = Number(values.warmup);

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

/** Wraps every method of `ops` to add its wall time to `acc` (by method name). */
function instrument(ops: ModelOps<Mat>, acc: Map<string, number>): void {
  const target = ops as unknown as Record<string, unknown>;
  const proto = Object.getPrototypeOf(ops) as Record<string, unknown>;
  for (const name of Object.getOwnPropertyNames(proto)) {
    const f = proto[name];
    if (name === 'constructor' || typeof f !== 'function') continue;
    target[name] = (...args: unknown[]) => {
      const t0 = performance.now();
      try {
        return (f as (...a: unknown[]) => unknown).apply(ops, args);
      } finally {
        acc.set(name, (acc.get(name) ?? 0) + performance.now() - t0);
      }
    };
  }
}

const model = randomVimModel(arch, 0);
quantizeForSpeed(model, 8, 8, { seed: 0 });
const images = randomImages(model, B, 1000 + B);
const info = cpuKernels().runtimeInfo();
const machine = `${cpus()[0]?.model.trim()}, ${cpus().length} CPUs, ISA ${info.isa}, ${info.threads} pool threads`;
console.log(`${arch} batch ${B}: ${machine}`);

const precisions: Precision[] = values.precision ? [values.precision as Precision] : values.fake ? ['fp32', 'int8', 'fake-quant'] : ['fp32', 'int8'];
const result: Record<string, unknown> = { bench: 'cpu-e2e', arch, batch: B, machine };
for (const precision of precisions) {
  const runner = new ModelRunner(model, { device: 'cpu', precision });
  const acc = new Map<string, number>();
  const once = (): { wall: number; cpu: number } => {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    try {
      runner.ops.toHost(vimForward(runner.ops, model, images));
    } finally {
      runner.ops.endForward();
    }
    const wall = performance.now() - t0;
    const c = process.cpuUsage(c0);
    return { wall, cpu: (c.user + c.system) / 1000 };
  };
  for (let i = 0; i < warmup; i++) once();
  if (values.profile) instrument(runner.ops, acc);
  const runs = Array.from({ length: iters }, once);
  const wall = median(runs.map((r) => r.wall));
  const cpu = median(runs.map((r) => r.cpu));
  console.log(`  ${precision.padEnd(10)} wall ${wall.toFixed(1)} ms (${(wall / B).toFixed(1)} ms/image), cpu ${cpu.toFixed(1)} ms; runs ${runs.map((r) => r.wall.toFixed(0)).join(' ')}`);
  if (values.profile) {
    const total = [...acc.values()].reduce((a, b) => a + b, 0);
    for (const [k, v] of [...acc.entries()].sort((a, b) => b[1] - a[1])) {
      console.log(`      ${k.padEnd(18)} ${(v / iters).toFixed(1).padStart(8)} ms  ${((100 * v) / total).toFixed(1)}%`);
    }
  }
  result[`${precision}_ms`] = Math.round(wall * 10) / 10;
  result[`${precision}_cpu_ms`] = Math.round(cpu * 10) / 10;
}
if (result.fp32_ms && result.int8_ms) {
  result.speedup = Math.round(((result.fp32_ms as number) / (result.int8_ms as number)) * 100) / 100;
  result.speedup_cpu = Math.round(((result.fp32_cpu_ms as number) / (result.int8_cpu_ms as number)) * 100) / 100;
}
console.log(JSON.stringify(result));
