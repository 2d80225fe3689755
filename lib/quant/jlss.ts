import { BufferPool, Tape, TapeExecutor, tapeMat, trainKernels, Var, type LinearFakeQuant, type TapeMat } from '../autograd/index.js';
import type { Act, LinearSite } from '../models/ops.js';
import { aQmax, wQmax } from './params.js';

export interface JlssInput {
  /** Names the unit in errors (e.g. `layers.3`). */
  name: string;
  /** The unit's forward, the model graph itself (lib/models/common/calibration-plan.ts), run on the tape. */
  run: (ops: TapeExecutor, x: Act<TapeMat>, batch: number) => TapeMat;
  /** Every quantized linear of the unit, in graph order (each with its initial `quant`). */
  sites: readonly LinearSite[];
  /** Linears whose σ and step sizes are learned; the others stay quantized with fixed parameters. */
  trainable: ReadonlySet<LinearSite>;
  /** The unit's input on the quantized stream, [images·rowsPerImage, inCols]. */
  input: Float32Array;
  /** The FP unit's output on the FP stream, [images·rowsPerImage, outCols]. */
  target: Float32Array;
  images: number;
  rowsPerImage: number;
  inCols: number;
  outCols: number;
  /**
   * Images per forward/backward pass. A step still sees every image: gradients of the chunks add
   * up (each chunk's loss weighted by its share of the rows), so smaller chunks only bound memory.
   */
  chunkImages: number;
  steps: number;
  lrSmooth: number;
  lrStep: number;
  weightDecay: number;
  clipNorm: number;
  /**
   * Keep the parameters of the lowest loss seen (the initial ones, each step's, the final ones)
   * instead of the final ones. Off for Vim (the reference behaviour, and its files stay as they
   * were); on for the other families, whose step sizes can be smaller than the fixed learning
   * rates (see docs/backbones.md), so that JLSS never leaves a unit worse than its initialisation.
   */
  keepBest?: boolean;
  onStep?: (step: number, loss: number) => void;
}

export interface JlssResult {
  /** Loss before each step. */
  losses: number[];
  /** With keepBest: the step whose starting parameters were kept (0: the initial ones, untouched; `steps`: the final ones). */
  keptStep: number;
}

/** Lower bounds that keep σ and step sizes valid (the quantizers reject non-positive values). */
const MIN_SMOOTH = 1e-5;
const MIN_STEP = 1e-8;

/** AdamW (decoupled weight decay), as torch.optim.AdamW with betas (0.9, 0.999), eps 1e-8. */
class AdamW {
  private readonly m: Float32Array[];
  private readonly v: Float32Array[];
  private t = 0;
  constructor(private readonly groups: { params: Var[]; lr: number; floor: number }[], private readonly weightDecay: number) {
    const all = groups.flatMap((g) => g.params);
    this.m = all.map((p) => new Float32Array(p.size));
    this.v = all.map((p) => new Float32Array(p.size));
  }

  /** Scales all gradients so their global L2 norm is at most maxNorm; returns the norm before clipping. */
  clip(maxNorm: number): number {
    let sq = 0;
    for (const g of this.groups) for (const p of g.params) if (p.grad) for (let i = 0; i < p.size; i++) sq += p.grad[i]! * p.grad[i]!;
    const norm = Math.sqrt(sq);
    if (norm > maxNorm) {
      const f = maxNorm / (norm + 1e-6);
      for (const g of this.groups) for (const p of g.params) if (p.grad) for (let i = 0; i < p.size; i++) p.grad[i]! *= f;
    }
    return norm;
  }

  step(): void {
    this.t++;
    const b1 = 0.9, b2 = 0.999, eps = 1e-8;
    const c1 = 1 - b1 ** this.t, c2 = 1 - b2 ** this.t;
    let k = 0;
    for (const g of this.groups) {
      for (const p of g.params) {
        const m = this.m[k]!, v = this.v[k]!;
        k++;
        const grad = p.grad;
        const d = p.data;
        for (let i = 0; i < p.size; i++) {
          const gi = grad ? grad[i]! : 0;
          d[i] = d[i]! * (1 - g.lr * this.weightDecay);
          m[i] = b1 * m[i]! + (1 - b1) * gi;
          v[i] = b2 * v[i]! + (1 - b2) * gi * gi;
          d[i] = Math.max(g.floor, d[i]! - (g.lr * (m[i]! / c1)) / (Math.sqrt(v[i]! / c2) + eps));
        }
        p.zeroGrad();
      }
    }
  }
}

/**
 * JLSS on one calibration unit (a Vim/LocalVim mixer, a VMamba/LocalVMamba block): learns σ,
 * weight step sizes and activation step sizes of its linears jointly by AdamW (full batch,
 * gradient-norm clipping), minimising the mean over tokens of 1 − cos(FP output, quantized
 * output) across channels. The quantized forward is the model graph itself on the autograd tape.
 * Writes the learned parameters back into each site's `quant` (qweight re-derived from the
 * learned σ and steps; zero points stay as initialised).
 */
export function runJlss(input: JlssInput): JlssResult {
  const { trainable, images, rowsPerImage, inCols, outCols } = input;
  const quant = new Map<LinearSite, LinearFakeQuant>();
  const smoothParams: Var[] = [];
  const stepParams: Var[] = [];
  for (const site of input.sites) {
    const q = site.quant;
    if (!q) throw new Error(`JLSS: ${site.name} has no initial quantization`);
    if (q.granularity === 'per-token-dynamic') throw new Error('JLSS needs static activation parameters');
    const mk = (a: Float32Array) => (trainable.has(site) ? Var.param(a.slice()) : Var.constant(a.slice()));
    const fq: LinearFakeQuant = {
      smooth: mk(q.smooth), wscale: mk(q.wscale), wqmax: wQmax(q.wbits),
      ascale: mk(q.actScale), azero: q.actZero, aqmax: aQmax(q.abits), period: q.actScale.length,
      reversePeriod: site.reversedTokens && q.actScale.length > 1,
    };
    quant.set(site, fq);
    if (trainable.has(site)) {
      smoothParams.push(fq.smooth!);
      stepParams.push(fq.wscale, fq.ascale);
    }
  }
  const opt = new AdamW([
    { params: smoothParams, lr: input.lrSmooth, floor: MIN_SMOOTH },
    { params: stepParams, lr: input.lrStep, floor: MIN_STEP },
  ], input.weightDecay);
  // The images in chunks: inputs and targets as constant views.
  const per = Math.max(1, Math.min(images, input.chunkImages));
  const chunks: { n: number; x: Var; target: Var; weight: number }[] = [];
  for (let i0 = 0; i0 < images; i0 += per) {
    const n = Math.min(per, images - i0);
    const r0 = i0 * rowsPerImage, r1 = r0 + n * rowsPerImage;
    chunks.push({
      n, weight: n / images,
      x: Var.constant(input.input.subarray(r0 * inCols, r1 * inCols), [r1 - r0, inCols]),
      target: Var.constant(input.target.subarray(r0 * outCols, r1 * outCols), [r1 - r0, outCols]),
    });
  }
  const pool = new BufferPool();
  /** The full-batch loss at the current parameters, and (backward) its gradients accumulated into the parameters. */
  const pass = (backward: boolean): number => {
    let value = 0;
    for (const c of chunks) {
      const tape = new Tape({ pool });
      const ops = new TapeExecutor(tape, { quant });
      const out = input.run(ops, { fp: tapeMat(c.x) }, c.n);
      let loss = tape.cosineLoss(out.v, c.target);
      const chunkLoss = loss.item();
      // One chunk is the plain full-batch loss; several add up to it by their share of the rows.
      if (backward) {
        if (chunks.length > 1) loss = tape.scale(loss, c.weight);
        tape.backward(loss);
      }
      value = chunks.length > 1 ? value + chunkLoss * c.weight : chunkLoss;
      tape.release();
    }
    return value;
  };
  const params = [...smoothParams, ...stepParams];
  let best: { loss: number; step: number; values: Var['data'][] | null } = { loss: Infinity, step: 0, values: null };
  const losses: number[] = [];
  for (let step = 0; step < input.steps; step++) {
    const value = pass(true);
    if (!Number.isFinite(value)) throw new Error(`JLSS: ${input.name} loss became ${value} at step ${step}`);
    losses.push(value);
    // Step 0's parameters are the initial ones, which stay in site.quant: no copy needed.
    if (input.keepBest && value < best.loss) best = { loss: value, step, values: step === 0 ? null : params.map((p) => p.data.slice()) };
    opt.clip(input.clipNorm);
    opt.step();
    input.onStep?.(step, value);
  }
  let keptStep = input.steps;
  if (input.keepBest && input.steps > 0 && !(pass(false) < best.loss)) {
    keptStep = best.step;
    if (best.values === null) {
      pool.clear();
      return { losses, keptStep };
    }
    params.forEach((p, i) => p.data.set(best.values![i]!));
  }
  pool.clear();
  // Write back: σ, steps, and the weight levels the learned σ/steps give (the integers training saw).
  const tk = trainKernels();
  for (const site of input.sites) {
    if (!trainable.has(site)) continue;
    const q = site.quant!;
    const fq = quant.get(site)!;
    const smooth = Float32Array.from(fq.smooth!.data);
    const wscale = Float32Array.from(fq.wscale.data);
    const qweight = new Int8Array(site.outFeatures * site.inFeatures);
    tk.trainWeightLevels(site.outFeatures, site.inFeatures, site.weight.data, smooth, wscale, fq.wqmax, qweight);
    site.quant = { ...q, smooth, wscale, actScale: Float32Array.from(fq.ascale.data), qweight };
  }
  return { losses, keptStep };
}
