/**
 * How PTQ4VM's block-by-block calibration walks each family (lib/quant/calibrate.ts drives it):
 * a plan is the model cut into steps. FP steps (embeddings, RoPE + add-norm, stems, downsampling)
 * run on both the FP and the quantized stream and are never trained. Units hold the quantized
 * linears: a unit is a function from its input rows to its output rows, written with the model's
 * own graph functions, so the streams (CPU executor) and JLSS (autograd tape) run the same code.
 *
 * - Vim, LocalVim: a unit is the mixer, its input the add-norm output (JLSS's loss compares mixer
 *   outputs, as the reference Vim code does).
 * - VMamba, LocalVMamba: a unit is the whole block, residual (and VMamba's MLP) included, as the
 *   authors' VMamba code trains VSSBlocks.
 *
 * Streams are host arrays, image-major (each image's rows consecutive), so any number of images
 * can be cut into chunks.
 */
import type { Act, BackboneOps, Grid, Mat } from '../ops.js';
import type { Tensor } from '../../tensor/tensor.js';
import { vimEmbed, vimMixer } from '../vim/graph.js';
import { VIM_LINEARS, VimModel } from '../vim/model.js';
import { localVimEmbed, localVimMixer } from '../localvim/graph.js';
import type { LocalVimModel, QuantizableSite } from '../localvim/model.js';
import { vmambaBlock, vmambaDownsample, vmambaStem } from '../vmamba/graph.js';
import type { VMambaModel } from '../vmamba/model.js';
import { localVMambaBlock, localVMambaDownsample, localVMambaStem } from '../localvmamba/graph.js';
import type { LocalVMambaModel } from '../localvmamba/model.js';
import type { BackboneModel } from './forward.js';
import type { ModelFamily } from './family.js';

/** Named host arrays of a stream (entries absent = null, e.g. the residual before layer 0). */
export type Stream = Readonly<Record<string, Float32Array>>;

/** An executor the streams run on: the model's ops plus uploads of host rows. */
export interface HostOps<M extends Mat> extends BackboneOps<M> {
  fromHost(data: Float32Array, rows: number, cols: number): M;
}

/** A step that is never quantized: maps the stream of `batch` images (and the images) to the next stream. */
export interface FpStep {
  readonly kind: 'fp';
  readonly name: string;
  /** Returns host copies (the executor's buffers are recycled after each chunk). */
  run<M extends Mat>(ops: HostOps<M>, s: Stream, images: Tensor<'F32'>, batch: number): Stream;
}

/** A block of quantized linears, calibrated (and trained by JLSS) as one. */
export interface UnitStep {
  readonly kind: 'unit';
  /** e.g. `layers.3` (Vim, LocalVim) or `layers.1.blocks.0` (VMamba, LocalVMamba). */
  readonly name: string;
  /** Its quantizable linears in graph order, each with its per-image token count (per-token parameters). */
  readonly sites: readonly QuantizableSite[];
  /** The stream entry it reads and the one its output replaces. */
  readonly input: string;
  readonly output: string;
  readonly rowsPerImage: number;
  readonly inCols: number;
  readonly outCols: number;
  /** The unit's forward on `batch` images: input rows [batch·rowsPerImage, inCols] → output rows. */
  run<M extends Mat>(ops: BackboneOps<M>, x: Act<M>, batch: number): M;
}

export type PlanStep = FpStep | UnitStep;

export interface CalibrationPlan {
  readonly family: ModelFamily;
  readonly steps: readonly PlanStep[];
  /** SmoothQuant α of the family: 0.65 for VMamba (issue 10, the authors' VMamba setting), 0.5 otherwise. */
  readonly alpha: number;
  /**
   * Images per executor call on the streams, or null for all at once (Vim: the calibration's
   * results stay bit-identical to the single-call pipeline they come from).
   */
  readonly chunk: number | null;
  /** The input size the plan (stage grids, token counts, scan orders) is built for. */
  readonly inputSize: { H: number; W: number };
  /**
   * JLSS keeps the parameters of the lowest unit loss it saw instead of the last step's
   * (lib/quant/jlss.ts): false for Vim (the reference behaviour), true for the other families.
   */
  readonly jlssKeepBest: boolean;
}

/** Images per executor call on the streams of the hierarchical / local backbones (bounds their memory). */
const BACKBONE_CHUNK = 32;

/** The units of a plan. */
export function planUnits(plan: CalibrationPlan): UnitStep[] {
  return plan.steps.filter((s): s is UnitStep => s.kind === 'unit');
}

/** The calibration plan of a model for inputs of H×W pixels (Vim, LocalVim: their img_size only). */
export function calibrationPlan(model: VimModel | BackboneModel, H: number, W: number): CalibrationPlan {
  if (model instanceof VimModel) return vimPlan(model, H, W);
  switch (model.arch) {
    case 'localvim': return localVimPlan(model, H, W);
    case 'vmamba': return vmambaPlan(model, H, W);
    case 'localvmamba': return localVMambaPlan(model, H, W);
  }
}

function fixedSize(what: string, size: number, H: number, W: number): void {
  if (H !== size || W !== size) throw new RangeError(`${what} calibrates on ${size}×${size} images (its position embedding), got ${H}×${W}`);
}

/** Sites whose name starts with `prefix`, in the order quantizableSites() lists them. */
function sitesUnder(all: readonly QuantizableSite[], prefix: string): QuantizableSite[] {
  return all.filter((s) => s.site.name.startsWith(prefix));
}

/** Host copy of a matrix view. */
function host<M extends Mat>(ops: HostOps<M>, m: M): Float32Array {
  return ops.toHost(m);
}

function vimPlan(model: VimModel, H: number, W: number): CalibrationPlan {
  fixedSize('Vim', model.config.img_size, H, W);
  const L = model.dims.seqLen;
  const D = model.config.embed_dim;
  const eps = model.config.eps;
  const steps: PlanStep[] = [{
    kind: 'fp', name: 'embed',
    run: (ops, _s, images) => ({ hidden: host(ops, vimEmbed(ops, model, images)) }),
  }];
  for (const layer of model.layers) {
    const sites = model.linears(layer.index);
    steps.push({
      kind: 'fp', name: `layers.${layer.index}.norm`,
      run: (ops, s, _images, batch) => {
        const rows = batch * L;
        const r = ops.addNorm(ops.fromHost(s.hidden!, rows, D), s.residual ? ops.fromHost(s.residual, rows, D) : null, layer.norm, eps, null);
        return { normed: host(ops, r.normed.fp!), residual: host(ops, r.residual) };
      },
    });
    steps.push({
      kind: 'unit', name: `layers.${layer.index}`, input: 'normed', output: 'hidden', rowsPerImage: L, inCols: D, outCols: D,
      sites: VIM_LINEARS.map((l) => ({ site: sites[l], tokens: L })),
      run: (ops, x) => vimMixer(ops, model, layer, x),
    });
  }
  return { family: 'vim', steps, alpha: 0.5, chunk: null, inputSize: { H, W }, jlssKeepBest: false };
}

function localVimPlan(model: LocalVimModel, H: number, W: number): CalibrationPlan {
  fixedSize('LocalVim', model.config.img_size, H, W);
  const { seqLen: L } = model.dims;
  const c = model.config;
  const D = c.embed_dim;
  const all = [...model.quantizableSites()];
  const steps: PlanStep[] = [{
    kind: 'fp', name: 'embed',
    run: (ops, _s, images) => ({ hidden: host(ops, localVimEmbed(ops, model, images)) }),
  }];
  for (const layer of model.layers) {
    steps.push({
      kind: 'fp', name: `layers.${layer.index}.norm`,
      run: (ops, s, _images, batch) => {
        const rows = batch * L;
        let hidden = ops.fromHost(s.hidden!, rows, D);
        let residual = s.residual ? ops.fromHost(s.residual, rows, D) : null;
        if (c.rope) {
          const P = model.dims.patches;
          const cos = model.tensor('rope.freqs_cos').reshape([P, D]);
          const sin = model.tensor('rope.freqs_sin').reshape([P, D]);
          hidden = ops.rope(hidden, batch, cos, sin);
          if (residual) residual = ops.rope(residual, batch, cos, sin);
        }
        const r = ops.addNorm(hidden, residual, layer.norm, c.eps, null);
        return { normed: host(ops, r.normed.fp!), residual: host(ops, r.residual) };
      },
    });
    steps.push({
      kind: 'unit', name: `layers.${layer.index}`, input: 'normed', output: 'hidden', rowsPerImage: L, inCols: D, outCols: D,
      sites: sitesUnder(all, `layers.${layer.index}.mixer.`),
      run: (ops, x, batch) => localVimMixer(ops, model, layer, x, batch),
    });
  }
  return { family: 'localvim', steps, alpha: 0.5, chunk: BACKBONE_CHUNK, inputSize: { H, W }, jlssKeepBest: true };
}

function vmambaPlan(model: VMambaModel, H: number, W: number): CalibrationPlan {
  const grids = model.stageGrids(H, W);
  const all = [...model.quantizableSites(H, W)];
  const steps: PlanStep[] = [{
    kind: 'fp', name: 'stem',
    run: (ops, _s, images) => ({ x: host(ops, vmambaStem(ops, model, images).x) }),
  }];
  for (const stage of model.stages) {
    const grid: Grid = grids[stage.index]!;
    const L = grid.H * grid.W;
    const C = stage.dims.dim;
    for (const block of stage.blocks) {
      steps.push({
        kind: 'unit', name: block.prefix, input: 'x', output: 'x', rowsPerImage: L, inCols: C, outCols: C,
        sites: sitesUnder(all, block.prefix + '.'),
        run: (ops, x, batch) => vmambaBlock(ops, model, block, x.fp!, batch, grid),
      });
    }
    if (stage.downsample) {
      steps.push({
        kind: 'fp', name: `layers.${stage.index}.downsample`,
        run: (ops, s, _images, batch) => ({ x: host(ops, vmambaDownsample(ops, model, stage, ops.fromHost(s.x!, batch * L, C), batch, grid).x) }),
      });
    }
  }
  return { family: 'vmamba', steps, alpha: 0.65, chunk: BACKBONE_CHUNK, inputSize: { H, W }, jlssKeepBest: true };
}

function localVMambaPlan(model: LocalVMambaModel, H: number, W: number): CalibrationPlan {
  const grids = model.stageGrids(H, W);
  const all = [...model.quantizableSites(H, W)];
  const steps: PlanStep[] = [{
    kind: 'fp', name: 'stem',
    run: (ops, _s, images) => ({ x: host(ops, localVMambaStem(ops, model, images)) }),
  }];
  for (const stage of model.stages) {
    const grid: Grid = grids[stage.index]!;
    const L = grid.H * grid.W;
    const C = stage.dims.dim;
    for (const block of stage.blocks) {
      steps.push({
        kind: 'unit', name: block.prefix, input: 'x', output: 'x', rowsPerImage: L, inCols: C, outCols: C,
        sites: sitesUnder(all, block.prefix + '.'),
        run: (ops, x, batch) => localVMambaBlock(ops, model, block, x.fp!, batch, grid),
      });
    }
    if (stage.downsample) {
      steps.push({
        kind: 'fp', name: `layers.${stage.index}.downsample`,
        run: (ops, s, _images, batch) => ({ x: host(ops, localVMambaDownsample(ops, model, stage, ops.fromHost(s.x!, batch * L, C), batch, grid).x) }),
      });
    }
  }
  return { family: 'localvmamba', steps, alpha: 0.5, chunk: BACKBONE_CHUNK, inputSize: { H, W }, jlssKeepBest: true };
}
