import { cpus } from 'node:os';
import { cpuKernels } from '../../backend/cpu-kernels.js';
import { cudaAvailability, cudaKernels, type CudaBufferHandle, type CudaKernels } from '../../backend/cuda-kernels.js';
import { runtimeInfo } from '../../backend/runtime-info.js';
import { loadAnyModel, type AnyModel } from '../../models/load.js';
import { describeBackboneConfig } from '../../models/common/family.js';
import { modelInput } from '../../models/common/input.js';
import { BACKBONE_ARCHS, isBackboneArch, randomBackboneImages, randomBackboneModel, type BackboneArch } from '../../models/common/random.js';
import { VimModel } from '../../models/vim/model.js';
import { calibrate } from '../../quant/calibrate.js';
import { isVimArch, quantizeForSpeed, randomImages, randomVimModel, VIM_ARCHS, type VimArch } from '../../models/vim/random.js';
import { cpuReplayFromEnv } from '../../runtime/cpu-executor.js';
import { CudaExecutor } from '../../runtime/cuda-executor.js';
import { ModelRunner, type Precision } from '../../runtime/forward.js';
import type { Tensor } from '../../tensor/tensor.js';
import { choiceOption, intOption, parseOptions, UsageError, type Command } from '../command.js';

type Device = 'cpu' | 'cuda';
type BenchPrecision = 'fp32' | 'fp16' | 'int8';

interface Timing {
  /** Median host-to-host time of one forward (upload, kernels, download), ms. */
  ms: number | null;
  /** CUDA: device time of the recorded forward replayed back to back (no host copies), ms. */
  deviceMs: number | null;
  error: string | null;
}

const round3 = (x: number | null): number | null => (x === null ? null : Math.round(x * 1000) / 1000);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function parseList(value: string | undefined, name: string, def: number[]): number[] {
  if (value === undefined) return def;
  const parts = value.split(',');
  return parts.map((p) => intOption(p.trim(), name, 1, 1, 4096));
}

/** One line naming the machine a number was measured on. */
export function describeMachine(device: Device): string {
  if (device === 'cuda') {
    const d = cudaAvailability().device;
    if (!d) return 'no CUDA device';
    return `${d.name} (compute capability ${d.computeCapability}, ${d.smCount} SMs, ${(d.memoryBytes / 2 ** 30).toFixed(0)} GiB), CUDA kernels ${runtimeInfo().cuda.kernelMode}`;
  }
  const info = runtimeInfo().cpu;
  return `${cpus()[0]?.model.trim() ?? 'unknown CPU'}, ISA ${info.isa}, ${info.threads} threads`;
}

/** One timed forward of the runner on `images` (checked once by the caller), host images to host logits. */
function forwardOnce(runner: ModelRunner, images: Tensor<'F32'>): { ms: number; logits: Float32Array } {
  const t0 = performance.now();
  const logits = runner.logitsOf(images);
  return { ms: performance.now() - t0, logits };
}

/**
 * Times the forwards of every runner on `images`: `warmup` untimed forwards each (which also
 * record and capture the CUDA replay), then `iters` rounds. On the CPU a round runs every
 * precision once, one after the other, so a slow spell of a shared machine (other tenants,
 * frequency changes) lands on all of them alike instead of on whichever ran then; on CUDA each
 * precision runs its rounds back to back (its replay stays resident). The input check of
 * ModelRunner.forward (a host-side scan of every pixel) is done once, outside the timing.
 * Returns the median time of each runner.
 */
function timeForwards(runners: ModelRunner[], model: AnyModel, images: Tensor<'F32'>, warmup: number, iters: number, interleave: boolean): number[] {
  const times: number[][] = runners.map(() => []);
  const round = (which: number[]) => {
    for (const i of which) times[i]!.push(forwardOnce(runners[i]!, images).ms);
  };
  const all = runners.map((_, i) => i);
  if (interleave) {
    for (const i of all) for (let w = 0; w < warmup; w++) forwardOnce(runners[i]!, images);
    for (let k = 0; k < iters; k++) round(all);
  } else {
    for (const i of all) {
      for (let w = 0; w < warmup; w++) forwardOnce(runners[i]!, images);
      for (let k = 0; k < iters; k++) round([i]);
    }
  }
  return times.map(median);
}

async function benchModel(model: AnyModel, device: Device, precisions: BenchPrecision[], batches: number[], warmup: number, iters: number,
  log: (s: string) => void): Promise<Map<BenchPrecision, Map<number, Timing>>> {
  const out = new Map<BenchPrecision, Map<number, Timing>>();
  const live: { precision: BenchPrecision; runner: ModelRunner }[] = [];
  for (const precision of precisions) {
    const row = new Map<number, Timing>();
    out.set(precision, row);
    try {
      live.push({ precision, runner: new ModelRunner(model, { device, precision: precision as Precision }) });
    } catch (e) {
      for (const b of batches) row.set(b, { ms: null, deviceMs: null, error: (e as Error).message.split('\n')[0]! });
    }
  }
  // Interleaving needs every runner to succeed on a batch; one that fails is timed alone.
  const timeAlone = (entry: (typeof live)[number], images: Tensor<'F32'>, B: number) => {
    const row = out.get(entry.precision)!;
    try {
      const [ms] = timeForwards([entry.runner], model, images, warmup, iters, false) as [number];
      let deviceMs: number | null = null;
      if (entry.runner.ops instanceof CudaExecutor) deviceMs = entry.runner.ops.timeRecorded(images.shape.join('x'), iters);
      row.set(B, { ms, deviceMs, error: null });
      log(`  ${entry.precision} batch ${B}: ${ms.toFixed(3)} ms${deviceMs !== null ? ` (device ${deviceMs.toFixed(3)} ms)` : ''}`);
    } catch (e) {
      row.set(B, { ms: null, deviceMs: null, error: (e as Error).message.split('\n')[0]! });
      log(`  ${entry.precision} batch ${B}: failed: ${(e as Error).message.split('\n')[0]}`);
    }
  };
  for (const B of batches) {
    const images = model instanceof VimModel ? randomImages(model, B, 1000 + B) : backboneImages(model, B, 1000 + B);
    let interleaved = false;
    if (device === 'cpu' && live.length > 1) {
      try {
        const ms = timeForwards(live.map((l) => l.runner), model, images, warmup, iters, true);
        live.forEach((l, i) => {
          out.get(l.precision)!.set(B, { ms: ms[i]!, deviceMs: null, error: null });
          log(`  ${l.precision} batch ${B}: ${ms[i]!.toFixed(3)} ms`);
        });
        interleaved = true;
      } catch {
        // Fall through: time each precision alone to find and report the one that fails.
      }
    }
    if (!interleaved) for (const entry of live) timeAlone(entry, images, B);
  }
  for (const { precision, runner } of live) {
    if (runner.ops instanceof CudaExecutor) {
      const state = runner.ops.replayState();
      const notGraph = Object.entries(state).filter(([, s]) => s !== 'graph');
      if (notGraph.length) log(`  ${precision}: replay ${notGraph.map(([k, s]) => `${k}: ${s}`).join('; ')}`);
      runner.ops.dispose();
    }
  }
  return out;
}

/**
 * Random images for a LocalVim / VMamba / LocalVMamba: img_size, or the size a quantized
 * VMamba / LocalVMamba was calibrated for (square only: what the calibrate command makes).
 */
function backboneImages(model: Exclude<AnyModel, VimModel>, batch: number, seed: number): Tensor<'F32'> {
  const fixed = modelInput(model).fixed;
  if (fixed && fixed.H !== fixed.W) throw new UsageError(`bench makes square images; this model was quantized for ${fixed.H}×${fixed.W}`);
  return randomBackboneImages(model, batch, seed, fixed?.H);
}

/**
 * The speed-only W8A8 of a LocalVim / VMamba / LocalVMamba for its int8 run: per-channel absmax
 * weights, per-token static min–max activations from one random image (calibrate's RTN with
 * per-token granularity). The same INT8 kernels and layout as a PTQ4VM file; the accuracy means nothing.
 */
function quantizeBackboneForSpeed(model: Exclude<AnyModel, VimModel>, seed: number): void {
  calibrate(model, randomBackboneImages(model, 1, seed + 1), { method: 'rtn', wbits: 8, abits: 8, granularity: 'per-token-static', seed });
}

// ---- GEMM micro-benchmark

interface GemmResult {
  fp32_ms: number | null;
  fp16_ms?: number | null;
  int8_ms: number | null;
  errors: Record<string, string>;
}

function randomFill(n: number, seed: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = ((s / 4294967296) * 2 - 1) * scale;
  }
  return out;
}

function timeHost(f: () => void, warmup: number, iters: number): number {
  for (let i = 0; i < warmup; i++) f();
  const times: number[] = [];
  for (let i = 0; i < iters; i++) {
    const t0 = performance.now();
    f();
    times.push(performance.now() - t0);
  }
  return median(times);
}

function benchGemmCpu(M: number, N: number, K: number, warmup: number, iters: number): GemmResult {
  const k = cpuKernels();
  const errors: Record<string, string> = {};
  const A = randomFill(M * K, 1);
  const W = randomFill(N * K, 2, 0.05);
  const C = new Float32Array(M * N);
  const fp32 = timeHost(() => k.gemmF32(false, true, M, N, K, A, K, W, K, null, false, C, N), warmup, iters);
  let int8: number | null = null;
  try {
    const A8 = Uint8Array.from(A, (v) => Math.round((v + 1) * 127));
    const W8 = Int8Array.from(W, (v) => Math.round(v * 2540));
    const packed = k.packInt8Weights(N, K, W8);
    const one = new Float32Array([0.01]);
    const zero = new Int32Array([128]);
    const ws = new Float32Array(N).fill(0.001);
    int8 = timeHost(() => k.gemmU8S8F32(M, N, K, A8, K, packed, one, zero, 1, ws, null, false, C, N), warmup, iters);
  } catch (e) {
    errors.int8 = (e as Error).message.split('\n')[0]!;
  }
  return { fp32_ms: fp32, int8_ms: int8, errors };
}

/** Each GEMM captured `iters` times into one CUDA graph, so host launch overhead is not timed. */
function benchGemmCuda(M: number, N: number, K: number, warmup: number, iters: number): GemmResult {
  const k: CudaKernels = cudaKernels();
  const ctx = k.cudaCreateContext(0);
  const errors: Record<string, string> = {};
  const bufs: CudaBufferHandle[] = [];
  const buf = (dtype: 'f32' | 'f16' | 'u8', data: Float32Array | Uint8Array) => {
    const b = k.cudaAlloc(ctx, dtype, data.length, false);
    k.cudaUpload(ctx, b, 0, data);
    bufs.push(b);
    return b;
  };
  const timeGraph = (launch: () => void): number => {
    for (let i = 0; i < warmup; i++) launch();
    k.cudaSynchronize(ctx);
    k.cudaBeginCapture(ctx);
    try {
      for (let i = 0; i < iters; i++) launch();
    } catch (e) {
      k.cudaAbortCapture(ctx);
      throw e;
    }
    const g = k.cudaEndCapture(ctx);
    k.cudaLaunchGraph(ctx, g);
    k.cudaSynchronize(ctx);
    const t0 = performance.now();
    k.cudaLaunchGraph(ctx, g);
    k.cudaSynchronize(ctx);
    const ms = (performance.now() - t0) / iters;
    k.cudaDispose(g);
    return ms;
  };
  const result: GemmResult = { fp32_ms: null, fp16_ms: null, int8_ms: null, errors };
  const Af = randomFill(M * K, 1);
  const Wf = randomFill(N * K, 2, 0.05);
  const bias = buf('f32', randomFill(N, 3, 0.1));
  try {
    const A = buf('f32', Af);
    const W = buf('f32', Wf);
    const C = buf('f32', new Float32Array(M * N));
    result.fp32_ms = timeGraph(() => k.cudaGemmF32(ctx, M, N, K, A, 0, K, W, 0, K, bias, false, C, 0, N));
  } catch (e) {
    errors.fp32 = (e as Error).message.split('\n')[0]!;
  }
  try {
    const A = buf('f16', Af);
    const W = k.cudaUploadF16Weights(ctx, N, K, Wf);
    const C = buf('f16', new Float32Array(M * N));
    result.fp16_ms = timeGraph(() => k.cudaGemmF16(ctx, M, A, 0, K, W, bias, C, 0, N, false, null));
    k.cudaDispose(W);
  } catch (e) {
    errors.fp16 = (e as Error).message.split('\n')[0]!;
  }
  try {
    const A = buf('u8', Uint8Array.from(Af, (v) => Math.round((v + 1) * 127)));
    const W = k.cudaUploadInt8Weights(ctx, N, K, Int8Array.from(Wf, (v) => Math.round(v * 2540)));
    const q = k.cudaQuantParams(ctx, 1, 255, new Float32Array([0.01]), new Int32Array([128]), null);
    const ws = buf('f32', new Float32Array(N).fill(0.001));
    const C = buf('f16', new Float32Array(M * N));
    result.int8_ms = timeGraph(() => k.cudaGemmU8S8(ctx, M, A, 0, K, W, q, ws, bias, C, 0, N, false, null, 0, 0, 0, null, null));
    k.cudaDispose(W);
    k.cudaDispose(q);
  } catch (e) {
    errors.int8 = (e as Error).message.split('\n')[0]!;
  }
  for (const b of bufs) k.cudaDispose(b);
  k.cudaDispose(ctx);
  return result;
}

const USAGE = `Usage: ptq4vm bench [--arch A | --model M] --device D --batch B [options]
       ptq4vm bench --op gemm --m M --n N --k K --device D [--json]

End-to-end inference time of a model, ms per batch, per precision: fp32 and int8 on the CPU;
fp32, fp16 (tensor cores) and int8 on CUDA (Vim only). --arch builds a full-size model with
random weights (Vim: 24 blocks, 224², 1000 classes; the other families: the released tiny
models' shapes, 224²); its INT8 run uses a speed-only quantization (per-channel weights,
per-token static activations from one random image: NOT PTQ4VM, the accuracy means nothing).
--model benchmarks a real file of any family (a quantized file uses its own quantization; an FP
one gets the speed-only quantization for its int8 run).
A time is the median of --iters forwards from host images to host logits (upload, every
kernel, download) after --warmup forwards. On the CPU the precisions take turns (fp32, int8,
fp32, int8, ...), so a slow spell of a shared machine weighs on both sides of the ratio alike.
On CUDA the repeated forwards replay as one CUDA graph (PTQ4VM_CUDA_REPLAY=off|launches|graph),
and "device" is that graph alone, back to back. On the CPU they replay the first forward's
kernel calls without the graph code (PTQ4VM_CPU_REPLAY=off|launches, default launches), as
every ModelRunner does.

Options:
  --arch A          vim-ti | vim-s | vim-b | local_vim_tiny | local_vim_tiny_middle_cls_token |
                    vmamba_v2v_tiny_224 | local_vssm_tiny, or a comma list (default vim-ti)
  --model M         a model file or built-in name instead of --arch
  --device D        cpu (default) | cuda
  --batch B         images per forward, or a comma list (default 1)
  --precision P     fp32 | fp16 | int8 | all (default all: fp32,int8 on cpu; fp32,fp16,int8 on cuda)
  --warmup N        untimed forwards first (default 5 on cuda, 1 on cpu)
  --iters N         timed forwards (default 20 on cuda, 3 on cpu)
  --seed N          random model seed (default 0)
  --op gemm         time one GEMM instead (C[M,N] = A[M,K]·W[N,K]ᵀ): --m, --n, --k
  --json            (the JSON lines are always printed last; --json prints only them)

Output: a table, then one JSON line per (model, batch):
  {"bench":"e2e","arch","batch","device","fp32_ms","int8_ms","speedup",...} (+"fp16_ms" on cuda;
  speedup = fp16_ms/int8_ms on cuda, fp32_ms/int8_ms on cpu), and for --op gemm
  {"bench":"op-gemm","m","n","k","device","fp32_ms","int8_ms"} (+"fp16_ms" on cuda).`;

export const benchCommand: Command = {
  name: 'bench',
  summary: 'time inference end to end (fp32 / fp16 / int8) or one GEMM, on cpu or cuda',
  usage: USAGE,
  async run(argv) {
    const { values } = parseOptions(argv, {
      arch: { type: 'string' }, model: { type: 'string' }, device: { type: 'string' }, batch: { type: 'string' },
      precision: { type: 'string' }, warmup: { type: 'string' }, iters: { type: 'string' }, seed: { type: 'string' },
      op: { type: 'string' }, m: { type: 'string' }, n: { type: 'string' }, k: { type: 'string' }, json: { type: 'boolean' },
    });
    const device = choiceOption(values.device, 'device', ['cpu', 'cuda'] as const, 'cpu');
    const warmup = intOption(values.warmup, 'warmup', device === 'cuda' ? 5 : 1, 0, 100000);
    const iters = intOption(values.iters, 'iters', device === 'cuda' ? 20 : 3, 1, 100000);
    const print = (s: string) => process.stdout.write(s + '\n');
    const log = values.json ? (s: string) => process.stderr.write(s + '\n') : print;
    if (device === 'cuda') {
      const { reason } = cudaAvailability();
      if (reason !== null) throw new Error(`device cuda is not available: ${reason}`);
    }
    const machine = describeMachine(device);

    if (values.op !== undefined) {
      if (values.op !== 'gemm') throw new UsageError(`--op must be gemm, got ${JSON.stringify(values.op)}`);
      const M = intOption(values.m, 'm', 0, 1, 1 << 22);
      const N = intOption(values.n, 'n', 0, 1, 1 << 20);
      const K = intOption(values.k, 'k', 0, 1, 32768);
      if (values.m === undefined || values.n === undefined || values.k === undefined) throw new UsageError('--op gemm needs --m, --n and --k');
      const r = device === 'cuda' ? benchGemmCuda(M, N, K, warmup, iters) : benchGemmCpu(M, N, K, warmup, iters);
      log(`ptq4vm bench gemm M=${M} N=${N} K=${K} on ${device}: ${machine}`);
      log(`  fp32 ${r.fp32_ms?.toFixed(4) ?? '-'} ms${device === 'cuda' ? `, fp16 ${r.fp16_ms?.toFixed(4) ?? '-'} ms` : ''}, int8 ${r.int8_ms?.toFixed(4) ?? '-'} ms`);
      for (const [p, e] of Object.entries(r.errors)) log(`  ${p}: ${e}`);
      const json: Record<string, unknown> = { bench: 'op-gemm', m: M, n: N, k: K, device, machine, fp32_ms: round3(r.fp32_ms) };
      if (device === 'cuda') json.fp16_ms = round3(r.fp16_ms ?? null);
      json.int8_ms = round3(r.int8_ms);
      if (Object.keys(r.errors).length) json.errors = r.errors;
      print(JSON.stringify(json));
      return 0;
    }

    if (values.arch !== undefined && values.model !== undefined) throw new UsageError('give --arch or --model, not both');
    const batches = parseList(values.batch, 'batch', [1]);
    const all: BenchPrecision[] = device === 'cuda' ? ['fp32', 'fp16', 'int8'] : ['fp32', 'int8'];
    const pChoice = choiceOption(values.precision, 'precision', ['fp32', 'fp16', 'int8', 'all'] as const, 'all');
    if (pChoice === 'fp16' && device === 'cpu') throw new UsageError('fp16 runs on --device cuda only');
    const precisions = pChoice === 'all' ? all : [pChoice];
    const seed = intOption(values.seed, 'seed', 0, 0, 2 ** 31 - 1);
    const targets: { label: string; load: () => Promise<AnyModel> }[] = [];
    if (values.model !== undefined) {
      const name = values.model;
      targets.push({ label: name, load: () => loadAnyModel(name) });
    } else {
      for (const a of (values.arch ?? 'vim-ti').split(',').map((s) => s.trim())) {
        if (isVimArch(a)) targets.push({ label: a, load: async () => randomVimModel(a as VimArch, seed) });
        else if (isBackboneArch(a)) targets.push({ label: a, load: async () => randomBackboneModel(a as BackboneArch, seed) });
        else {
          throw new UsageError(`--arch must be one of ${Object.keys(VIM_ARCHS).join(', ')}, got ${JSON.stringify(a)} `
            + `(or another family's: ${Object.keys(BACKBONE_ARCHS).join(', ')})`);
        }
      }
    }
    const replay = device === 'cuda' ? (process.env.PTQ4VM_CUDA_REPLAY ?? 'graph') : cpuReplayFromEnv();
    const lines: string[] = [];
    for (const target of targets) {
      const model = await target.load();
      let quantNote = 'none';
      if (precisions.includes('int8')) {
        if (model.isQuantized) quantNote = `the model's own (${model.quantMetadata?.method ?? 'unknown'} W${model.quantMetadata?.wbits ?? '?'}A${model.quantMetadata?.abits ?? '?'})`;
        else {
          if (model instanceof VimModel) quantizeForSpeed(model, 8, 8, { seed });
          else quantizeBackboneForSpeed(model, seed);
          quantNote = 'speed-only W8A8 (per-channel weights, per-token static activations from one random image; not PTQ4VM)';
        }
      }
      const random = values.model === undefined ? ` (random weights, seed ${seed})` : '';
      if (model instanceof VimModel) {
        log(`ptq4vm bench: ${target.label}${random}, ${model.config.depth} blocks, `
          + `D ${model.config.embed_dim}, ${model.config.img_size}², ${model.config.num_classes} classes on ${device}: ${machine}`);
      } else {
        const fixed = modelInput(model).fixed;
        log(`ptq4vm bench: ${target.label}${random}, ${describeBackboneConfig(model.config)}; input ${fixed ? `${fixed.H}×${fixed.W}` : `${model.config.img_size}²`} on ${device}: ${machine}`);
      }
      log(`  int8 quantization: ${quantNote}; warm-up ${warmup}, median of ${iters}${replay ? `, replay ${replay}` : ''}`);
      const res = await benchModel(model, device, precisions, batches, warmup, iters, log);
      const cols = precisions.map((p) => `${p} ms`);
      const head = ['batch', ...cols, device === 'cuda' ? 'fp16/int8' : 'fp32/int8', ...(device === 'cuda' ? precisions.map((p) => `${p} dev`) : [])];
      const table: string[][] = [head];
      for (const B of batches) {
        const ms = (p: BenchPrecision) => res.get(p)?.get(B)?.ms ?? null;
        const dev = (p: BenchPrecision) => res.get(p)?.get(B)?.deviceMs ?? null;
        const base = device === 'cuda' ? ms('fp16') : ms('fp32');
        const int8 = ms('int8');
        const speedup = base !== null && int8 !== null ? base / int8 : null;
        table.push([String(B), ...precisions.map((p) => ms(p)?.toFixed(3) ?? 'error'), speedup?.toFixed(2) ?? '-',
          ...(device === 'cuda' ? precisions.map((p) => dev(p)?.toFixed(3) ?? '-') : [])]);
        const json: Record<string, unknown> = {
          bench: 'e2e', arch: target.label, ...(model instanceof VimModel ? {} : { family: model.config.arch }), batch: B, device, fp32_ms: round3(ms('fp32')),
        };
        if (device === 'cuda') json.fp16_ms = round3(ms('fp16'));
        json.int8_ms = round3(ms('int8'));
        json.speedup = speedup === null ? null : Math.round(speedup * 1000) / 1000;
        if (device === 'cuda') {
          json.fp32_device_ms = round3(dev('fp32'));
          json.fp16_device_ms = round3(dev('fp16'));
          json.int8_device_ms = round3(dev('int8'));
          const d16 = dev('fp16');
          const d8 = dev('int8');
          json.device_speedup = d16 !== null && d8 !== null ? Math.round((d16 / d8) * 1000) / 1000 : null;
        }
        json.replay = replay;
        json.machine = machine;
        json.quant = quantNote;
        const errs = Object.fromEntries(precisions.flatMap((p) => {
          const e = res.get(p)?.get(B)?.error;
          return e ? [[p, e]] : [];
        }));
        if (Object.keys(errs).length) json.errors = errs;
        lines.push(JSON.stringify(json));
      }
      const widths = head.map((_, i) => Math.max(...table.map((r) => r[i]!.length)));
      for (const r of table) log('  ' + r.map((c, i) => c.padStart(widths[i]!)).join('  '));
    }
    for (const l of lines) print(l);
    return 0;
  },
};
