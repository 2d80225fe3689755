// FP32 CPU forward of LocalVim / VMamba v2 / LocalVMamba at the released tiny sizes (random
// weights in the real shapes: lib/models/common/random.ts), through ModelRunner:
//   node dist/scripts/bench-backbones.js [--arch local_vim_tiny,vmamba_v2v_tiny_224] [--batch 1,8]
//        [--iters 3] [--warmup 1] [--size 224] [--profile]
// Prints per model and batch the median wall time and the median process CPU time of one forward
// (on a loaded machine compare CPU time: with T pool threads an unloaded forward takes about
// cpu/T of wall), and with --profile the CPU time by executor op (outermost calls only).
// One JSON object per model and batch on the last lines.
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { cpuKernels } from '../lib/backend/cpu-kernels.js';
import { BACKBONE_ARCHS, isBackboneArch, randomBackboneImages, randomBackboneModel } from '../lib/models/common/random.js';
import type { Mat, ModelOps } from '../lib/models/ops.js';
import { ModelRunner } from '../lib/runtime/forward.js';

const { values } = parseArgs({
  options: {
    arch: { type: 'string', default: Object.keys(BACKBONE_ARCHS).join(',') }, batch: { type: 'string', default: '1' },
    iters: { type: 'string', default: '3' }, warmup: { type: 'string', default: '1' }, size: { type: 'string' },
    profile: { type: 'boolean', default: false },
  },
});
const archs = values.arch!.split(',').map((s) => s.trim());
for (const a of archs) if (!isBackboneArch(a)) throw new Error(`unknown --arch ${a} (one of ${Object.keys(BACKBONE_ARCHS).join(', ')})`);
const batches = values.batch!.split(',').map(Number);
const iters = Number(values.iters);
const warmup = Number(values.warmup);
const size = values.size === undefined ? undefined : Number(values.size);

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

/** Wraps every method of `ops` to add its process CPU time to `acc` (by method name; nested calls count once). */
function instrument(ops: ModelOps<Mat>, acc: Map<string, number>): void {
  let depth = 0;
  const target = ops as unknown as Record<string, unknown>;
  const proto = Object.getPrototypeOf(ops) as Record<string, unknown>;
  for (const name of Object.getOwnPropertyNames(proto)) {
    const f = proto[name];
    if (name === 'constructor' || typeof f !== 'function') continue;
    target[name] = (...args: unknown[]) => {
      const outer = depth++ === 0;
      const c0 = outer ? process.cpuUsage() : null;
      try {
        return (f as (...a: unknown[]) => unknown).apply(ops, args);
      } finally {
        depth--;
        if (c0) {
          const c = process.cpuUsage(c0);
          acc.set(name, (acc.get(name) ?? 0) + (c.user + c.system) / 1000);
        }
      }
    };
  }
}

const info = cpuKernels().runtimeInfo();
console.log(`${cpus()[0]?.model.trim()}, ${cpus().length} CPUs, ISA ${info.isa}, ${info.threads} pool threads; warm-up ${warmup}, median of ${iters}`);
const lines: string[] = [];
for (const arch of archs as (keyof typeof BACKBONE_ARCHS)[]) {
  const model = randomBackboneModel(arch, 0);
  const runner = new ModelRunner(model);
  for (const B of batches) {
    const images = randomBackboneImages(model, B, 1000 + B, size);
    const acc = new Map<string, number>();
    const once = (): { wall: number; cpu: number } => {
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      runner.forward(images);
      const wall = performance.now() - t0;
      const c = process.cpuUsage(c0);
      return { wall, cpu: (c.user + c.system) / 1000 };
    };
    for (let i = 0; i < warmup; i++) once();
    if (values.profile) instrument(runner.ops, acc);
    const runs = Array.from({ length: iters }, once);
    const wall = median(runs.map((r) => r.wall));
    const cpu = median(runs.map((r) => r.cpu));
    const side = images.dim(2);
    console.log(`${arch} ${side}×${side} batch ${B}: wall ${wall.toFixed(1)} ms (${(wall / B).toFixed(1)} ms/image), cpu ${cpu.toFixed(1)} ms; runs ${runs.map((r) => r.wall.toFixed(0)).join(' ')}`);
    const ops: Record<string, number> = {};
    if (values.profile) {
      const total = [...acc.values()].reduce((a, b) => a + b, 0);
      for (const [k, v] of [...acc.entries()].sort((a, b) => b[1] - a[1])) {
        ops[k] = Math.round((v / iters) * 10) / 10;
        if (v / iters >= 0.05) console.log(`    ${k.padEnd(22)} ${(v / iters).toFixed(1).padStart(8)} ms cpu  ${((100 * v) / total).toFixed(1)}%`);
      }
    }
    lines.push(JSON.stringify({
      bench: 'backbone-cpu-fp32', arch, batch: B, size: side, parameters: model.parameterCount,
      ms: Math.round(wall * 10) / 10, cpu_ms: Math.round(cpu * 10) / 10, ...(values.profile ? { ops_cpu_ms: ops } : {}),
    }));
  }
}
for (const l of lines) console.log(l);
