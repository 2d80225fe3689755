import type { BackboneOps, Mat, ModelOps } from '../models/ops.js';
import { backboneForward, type BackboneModel } from '../models/common/forward.js';
import { FAMILY_NAMES } from '../models/common/family.js';
import { imageShapeProblem, modelInput } from '../models/common/input.js';
import { vimForward } from '../models/vim/graph.js';
import { VimModel } from '../models/vim/model.js';
import { formatShape, Tensor } from '../tensor/tensor.js';
import { CpuExecutor, cpuReplayFromEnv, type CpuReplay, type QuantMode } from './cpu-executor.js';
import { CudaExecutor, type CudaReplay, type CudaScanMode } from './cuda-executor.js';
import { cudaAvailability } from '../backend/cuda-kernels.js';
import { InputError } from './errors.js';

export type Device = 'cpu' | 'cuda';
/** fp32/fp16: every linear in floating point; int8: quantized linears on INT8 kernels; fake-quant: their simulation. */
export type Precision = 'fp32' | 'fp16' | 'int8' | 'fake-quant';

export { InputError } from './errors.js';

/** A model of any family the runtime runs: Vim (every precision) or LocalVim / VMamba / LocalVMamba (fp32, int8, fake-quant on the CPU). */
export type RunnableModel = VimModel | BackboneModel;

/**
 * Checks images [B, C, H, W] against the model's input: Vim and LocalVim take exactly their
 * img_size, VMamba and LocalVMamba any H×W (see models/common/input.ts).
 */
export function checkImages(model: RunnableModel, images: Tensor, where = 'input'): Tensor<'F32'> {
  const want = imageShapeProblem(modelInput(model), images.shape);
  if (want !== null) throw new InputError(`${where} has shape ${formatShape(images.shape)}, the model takes ${want}`);
  const f = images.toFloat32();
  for (let i = 0; i < f.data.length; i++) {
    if (!Number.isFinite(f.data[i]!)) throw new InputError(`${where} holds a non-finite value at element ${i}`);
  }
  return f;
}

/** A model bound to an executor: runs batches of images to logits, synchronously (call it off the main thread). */
export class ModelRunner {
  readonly model: RunnableModel;
  readonly ops: ModelOps<Mat>;
  /** The same executor for a non-Vim model (the CPU's, which has their ops), else null. */
  private readonly backboneOps: BackboneOps<Mat> | null = null;
  readonly device: Device;
  readonly precision: Precision;

  /**
   * device cuda: the CUDA executor (precisions fp32, fp16, int8; `scan` and `replay` as in
   * cuda-executor.ts, defaulting to PTQ4VM_CUDA_SCAN or 'quantized' and PTQ4VM_CUDA_REPLAY or
   * 'graph'). When CUDA was asked
   * for but cannot run here (addon without CUDA, no GPU or driver), the runner falls back to
   * the CPU with a one-line message on stderr — unless the precision has no CPU path (fp16),
   * which is an InputError. The CPU is the default device.
   *
   * LocalVim, VMamba and LocalVMamba models run on the CPU only for now: fp32, and once quantized
   * int8 (the default for a quantized model) or fake-quant; fp16 or another device is an InputError.
   *
   * On the CPU, repeated forwards of one batch shape replay the first one's kernel calls
   * (`cpuReplay`, default PTQ4VM_CPU_REPLAY or 'launches'; see CpuReplay).
   */
  constructor(model: RunnableModel, opts: { device?: Device; precision?: Precision; scan?: CudaScanMode; replay?: CudaReplay; cpuReplay?: CpuReplay } = {}) {
    const cpuReplay = opts.cpuReplay ?? cpuReplayFromEnv();
    if (!(model instanceof VimModel)) {
      const family = FAMILY_NAMES[model.arch];
      const precision = opts.precision ?? (model.isQuantized ? 'int8' : 'fp32');
      if (precision === 'fp16') throw new InputError(`precision fp16 is not available for ${family} models yet (fp32, and int8 / fake-quant once quantized)`);
      if ((precision === 'int8' || precision === 'fake-quant') && !model.isQuantized) {
        throw new InputError(`precision ${precision} needs a quantized model (run 'ptq4vm calibrate' first)`);
      }
      const device = opts.device ?? 'cpu';
      if (device !== 'cpu') throw new InputError(`${family} models run on --device cpu only for now (the ${device} executor has no ${family} ops yet)`);
      this.model = model;
      this.device = 'cpu';
      this.precision = precision;
      const ops = new CpuExecutor({ quantMode: precision === 'fake-quant' ? 'fake' : precision === 'int8' ? 'int8' : 'off', replay: cpuReplay });
      this.ops = ops as unknown as ModelOps<Mat>;
      this.backboneOps = ops as unknown as BackboneOps<Mat>;
      return;
    }
    const precision = opts.precision ?? (model.isQuantized ? 'int8' : 'fp32');
    if ((precision === 'int8' || precision === 'fake-quant') && !model.isQuantized) {
      throw new InputError(`precision ${precision} needs a quantized model (run 'ptq4vm calibrate' first)`);
    }
    let device: Device = opts.device ?? 'cpu';
    if (device !== 'cpu' && device !== 'cuda') throw new InputError(`unknown device ${JSON.stringify(device)} (expected cpu or cuda)`);
    if (device === 'cuda') {
      const { reason } = cudaAvailability();
      if (reason !== null) {
        if (precision === 'fp16') throw new InputError(`device cuda is not available (${reason}); fp16 runs on --device cuda only`);
        process.stderr.write(`ptq4vm: device cuda is not available (${reason}); running on the CPU\n`);
        device = 'cpu';
      }
    }
    this.device = device;
    this.precision = precision;
    this.model = model;
    if (device === 'cuda') {
      if (precision === 'fake-quant') throw new InputError('precision fake-quant runs on --device cpu only');
      const envReplay = process.env.PTQ4VM_CUDA_REPLAY;
      const replay = opts.replay ?? (envReplay === 'off' || envReplay === 'launches' || envReplay === 'graph' ? envReplay : 'graph');
      const envScan = process.env.PTQ4VM_CUDA_SCAN;
      const scan = opts.scan ?? (envScan === 'fp' || envScan === 'quantized' ? envScan : 'quantized');
      this.ops = new CudaExecutor(model, { precision, scan, replay }) as unknown as ModelOps<Mat>;
      return;
    }
    if (precision === 'fp16') throw new InputError('fp16 runs on --device cuda only');
    const quantMode: QuantMode = precision === 'fake-quant' ? 'fake' : precision === 'fp32' ? 'off' : 'int8';
    this.ops = new CpuExecutor({ quantMode, replay: cpuReplay }) as unknown as ModelOps<Mat>;
  }

  /**
   * images [B, C, H, W] (normalized) → logits [B, classes]. On the CPU a Vim batch runs in
   * chunks of whole images of about CPU_CHUNK_ELEMENTS activation elements (tokens × embed
   * dim) each, so that a block's intermediates stay in cache; every kernel is row-independent,
   * so the logits are bit-identical to one unsplit forward.
   */
  forward(images: Tensor): Tensor<'F32'> {
    const x = checkImages(this.model, images);
    const B = x.dim(0);
    const classes = this.model.config.num_classes;
    const chunk = this.device === 'cpu' && this.model instanceof VimModel
      ? Math.max(1, Math.floor(CPU_CHUNK_ELEMENTS / (this.model.dims.seqLen * this.model.config.embed_dim)))
      : B;
    const run = (part: Tensor<'F32'>): Float32Array => this.logitsOf(part);
    if (chunk >= B) return new Tensor('F32', [B, classes], run(x));
    const logits = new Float32Array(B * classes);
    const per = x.size / B;
    for (let b = 0; b < B; b += chunk) {
      const n = Math.min(chunk, B - b);
      logits.set(run(new Tensor('F32', [n, ...x.shape.slice(1)], x.data.subarray(b * per, (b + n) * per))), b * classes);
    }
    return new Tensor('F32', [B, classes], logits);
  }

  /**
   * One forward of images that passed checkImages, unsplit: logits [B · classes]. On the CPU
   * through CpuExecutor.runForward (replayed after the first forward of a shape, see CpuReplay).
   */
  logitsOf(x: Tensor<'F32'>): Float32Array {
    const m = this.model;
    const graph = () => (m instanceof VimModel ? vimForward(this.ops, m, x) : backboneForward(this.backboneOps!, m, x));
    if (this.ops instanceof CpuExecutor) return this.ops.runForward(x, graph as () => ReturnType<CpuExecutor['alloc']>);
    try {
      return this.ops.toHost(graph());
    } finally {
      this.ops.endForward();
    }
  }
}

/**
 * Activation elements (rows × embed dim) per chunk of a CPU forward (ModelRunner.forward).
 * Splitting only pays for large batches: on a 2-core Zen 4 (scripts/bench-cpu-e2e.ts --micro),
 * Vim-Ti batch 8 ran fastest unsplit (chunks of 4 images: 1.25× slower), batch 32 fastest in
 * chunks of 16 (1.1–1.2× faster than unsplit or chunks of 8). About 16 Vim-Ti images.
 */
const CPU_CHUNK_ELEMENTS = 640_000;
