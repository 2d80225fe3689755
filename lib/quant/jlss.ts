import { BufferPool, Tape, TapeExecutor, tapeMat, trainKernels, Var, type LinearFakeQuant } from '../autograd/index.js';
import type { LinearSite } from '../models/ops.js';
import { vimMixer } from '../models/vim/graph.js';
import type { VimLayer, VimLinearName, VimModel } from '../models/vim/model.js';
import { aQmax, wQmax } from './params.js';

export interface JlssInput {
  model: VimModel;
  layer: VimLayer;
  /** The block's normalized input on the quantized stream, [rows, D]. */
  normed: Float32Array;
  /** The FP mixer output on the FP stream, [rows, D]. */
  target: Float32Array;
  rows: number;
  /** Linears whose σ and step sizes are learned; the others stay quantized with fixed parameters. */
  trainable: readonly VimLinearName[];
  steps: number;
  lrSmooth: number;
  lrStep: number;
  weightDecay: number;
  clipNorm: number;
  onStep?: (step: number, loss: number) => void;
}

export interface JlssResult {
  /** Loss before each step. */
  losses: number[];
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
 * JLSS on one Vim block: learns σ, weight step sizes and activation step sizes of the block's
 * linears jointly by AdamW (full batch, gradient-norm clipping), minimising mean over tokens of
 * 1 − cos(FP mixer output, quantized mixer output). The quantized forward is the model graph itself
 * (vimMixer) on the autograd tape. Writes the learned parameters back into each site's `quant`
 * (qweight re-derived from the learned σ and steps; zero points stay as initialised).
 */
export function runJlss(input: JlssInput): JlssResult {
  const { model, layer, rows } = input;
  const D = model.config.embed_dim;
  const sites = model.linears(layer.index);
  const trainable = new Set<LinearSite>(input.trainable.map((n) => sites[n]));
  const quant = new Map<LinearSite, LinearFakeQuant>();
  const smoothParams: Var[] = [];
  const stepParams: Var[] = [];
  for (const site of Object.values(sites)) {
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
  const x = tapeMat(Var.constant(input.normed, [rows, D]));
  const target = Var.constant(input.target, [rows, D]);
  const pool = new BufferPool();
  const losses: number[] = [];
  for (let step = 0; step < input.steps; step++) {
    const tape = new Tape({ pool });
    const ops = new TapeExecutor(tape, { quant });
    const out = vimMixer(ops, model, layer, { fp: x });
    const loss = tape.cosineLoss(out.v, target);
    tape.backward(loss);
    const value = loss.item();
    tape.release();
    if (!Number.isFinite(value)) throw new Error(`JLSS: block ${layer.index} loss became ${value} at step ${step}`);
    losses.push(value);
    opt.clip(input.clipNorm);
    opt.step();
    input.onStep?.(step, value);
  }
  pool.clear();
  // Write back: σ, steps, and the weight levels the learned σ/steps give (the integers training saw).
  const tk = trainKernels();
  for (const site of trainable) {
    const q = site.quant!;
    const fq = quant.get(site)!;
    const smooth = Float32Array.from(fq.smooth!.data);
    const wscale = Float32Array.from(fq.wscale.data);
    const qweight = new Int8Array(site.outFeatures * site.inFeatures);
    tk.trainWeightLevels(site.outFeatures, site.inFeatures, site.weight.data, smooth, wscale, fq.wqmax, qweight);
    site.quant = { ...q, smooth, wscale, actScale: Float32Array.from(fq.ascale.data), qweight };
  }
  return { losses };
}
