import type { LinearSite } from '../ops.js';
import { CpuExecutor, type CpuMat } from '../../runtime/cpu-executor.js';
import { aQmax, wQmax, type LinearQuant } from '../../quant/params.js';
import { Tensor } from '../../tensor/tensor.js';
import { vimForward } from './graph.js';
import { vimDims, vimTensorShapes, type VimConfig } from './config.js';
import { VimModel } from './model.js';

/** The released Vim sizes (Vision Mamba, Zhu et al. 2024): 24 blocks, 224², patch 16. */
export const VIM_ARCHS = { 'vim-ti': 192, 'vim-s': 384, 'vim-b': 768 } as const;
export type VimArch = keyof typeof VIM_ARCHS;

export function isVimArch(s: string): s is VimArch {
  return Object.prototype.hasOwnProperty.call(VIM_ARCHS, s);
}

/** The config of a released Vim size (depth, image size and class count may be overridden for tests). */
export function vimArchConfig(arch: VimArch, opts: { depth?: number; imgSize?: number; numClasses?: number } = {}): VimConfig {
  return {
    arch: 'vim', img_size: opts.imgSize ?? 224, patch_size: 16, stride: 16, in_chans: 3, embed_dim: VIM_ARCHS[arch],
    depth: opts.depth ?? 24, d_state: 16, expand: 2, d_conv: 4, num_classes: opts.numClasses ?? 1000, eps: 1e-5,
  };
}

/** A small deterministic generator (mulberry32), seeded per tensor so the order of generation does not matter. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function hash(s: string, seed: number): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

function uniform(n: number, bound: number, r: () => number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (2 * r() - 1) * bound;
  return out;
}

/** Normal(0, std) truncated to ±2 std (timm's trunc_normal_ for cls/pos/head). */
function truncNormal(n: number, std: number, r: () => number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; ) {
    const u = Math.max(r(), 1e-12);
    const v = r();
    const g = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
    if (Math.abs(g) <= 2) out[i++] = g * std;
  }
  return out;
}

/**
 * A full-size Vim with random weights of realistic magnitude, deterministic in (arch, seed):
 * linears and convs as PyTorch initialises them (uniform ±1/√fan_in), out_proj rescaled by
 * 1/√depth as Vim's prenorm-residual init does, dt_proj as Mamba (weight ±dt_rank^−½, bias the
 * inverse softplus of dt ~ logUniform[1e-3, 1e-1]), A_log = log(1..16), D = 1, norms 1,
 * cls/pos/head truncated normal(0.02). For benchmarks: its predictions mean nothing.
 */
export function randomVimModel(arch: VimArch, seed = 0, opts: { depth?: number; imgSize?: number; numClasses?: number } = {}): VimModel {
  const config = vimArchConfig(arch, opts);
  const dims = vimDims(config);
  const tensors = new Map<string, Tensor<'F32'>>();
  for (const [name, shape] of vimTensorShapes(config)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const r = rng(hash(name, seed));
    const fanIn = shape.length > 1 ? n / shape[0]! : n;
    let data: Float32Array;
    if (name === 'cls_token' || name === 'pos_embed' || name === 'head.weight') data = truncNormal(n, 0.02, r);
    else if (name === 'head.bias') data = new Float32Array(n);
    else if (name.endsWith('norm.weight') || name === 'norm_f.weight' || /mixer\.D(_b)?$/.test(name)) data = new Float32Array(n).fill(1);
    else if (/A(_b)?_log$/.test(name)) {
      data = new Float32Array(n);
      for (let i = 0; i < n; i++) data[i] = Math.log((i % config.d_state) + 1);
    } else if (/dt_proj(_b)?\.weight$/.test(name)) data = uniform(n, dims.dtRank ** -0.5, r);
    else if (/dt_proj(_b)?\.bias$/.test(name)) {
      data = new Float32Array(n);
      for (let i = 0; i < n; i++) {
        const dt = Math.max(Math.exp(r() * (Math.log(0.1) - Math.log(0.001)) + Math.log(0.001)), 1e-4);
        data[i] = dt + Math.log(-Math.expm1(-dt));
      }
    } else if (/conv1d(_b)?\.(weight|bias)$/.test(name)) data = uniform(n, 1 / Math.sqrt(config.d_conv), r);
    else if (name === 'patch_embed.proj.bias') data = uniform(n, 1 / Math.sqrt(config.in_chans * config.patch_size ** 2), r);
    else if (name.endsWith('out_proj.weight')) data = uniform(n, 1 / Math.sqrt(fanIn) / Math.sqrt(config.depth), r);
    else data = uniform(n, 1 / Math.sqrt(fanIn), r);
    tensors.set(name, new Tensor('F32', shape, data));
  }
  return new VimModel(config, tensors, { random: JSON.stringify({ arch, seed }) });
}

/** Deterministic normalized-looking images [B, C, H, W] (standard normal), for benchmarks. */
export function randomImages(model: VimModel, batch: number, seed = 1): Tensor<'F32'> {
  const c = model.config;
  const n = batch * c.in_chans * c.img_size * c.img_size;
  return new Tensor('F32', [batch, c.in_chans, c.img_size, c.img_size], truncNormal(n, 1, rng(hash('images', seed))));
}

/** Per-row max|w| / qmax scales and rounded levels (ties to even) of a weight [out, in]. */
function quantizeWeightsPerChannel(w: Float32Array, out: number, inF: number, bits: number): { qweight: Int8Array; wscale: Float32Array } {
  const qmax = wQmax(bits);
  const qweight = new Int8Array(out * inF);
  const wscale = new Float32Array(out);
  for (let o = 0; o < out; o++) {
    let m = 0;
    for (let j = 0; j < inF; j++) m = Math.max(m, Math.abs(w[o * inF + j]!));
    const s = Math.fround(Math.max(m, 1e-8) / qmax);
    wscale[o] = s;
    for (let j = 0; j < inF; j++) {
      const v = w[o * inF + j]! / s;
      const f = Math.floor(v);
      const d = v - f;
      const q = d > 0.5 ? f + 1 : d < 0.5 ? f : f % 2 === 0 ? f : f + 1;
      qweight[o * inF + j] = Math.max(-qmax, Math.min(qmax, q));
    }
  }
  return { qweight, wscale };
}

/**
 * Quantizes every linear of `model` in place for SPEED MEASUREMENTS ONLY (not PTQ4VM): weights
 * per output channel (max|w|, no smoothing: σ = 1), activations per token static (period L)
 * with each token's min/max over one FP32 CPU forward of `calibImages` seeded random images.
 * The backward-branch parameters are stored in that branch's own (reversed) token order, the
 * file-format convention.
 */
export function quantizeForSpeed(model: VimModel, wbits = 8, abits = 8, opts: { seed?: number; calibImages?: number } = {}): VimModel {
  const seed = opts.seed ?? 0;
  const L = model.dims.seqLen;
  const ranges = new Map<string, { lo: Float64Array; hi: Float64Array }>();
  const ops = new CpuExecutor({ quantMode: 'off' });
  const images = randomImages(model, opts.calibImages ?? 1, seed + 1);
  vimForward(ops, model, images, (name: string, m: CpuMat) => {
    if (!name.endsWith('.in')) return;
    const x = ops.toHost(m);
    const cols = m.cols;
    let r = ranges.get(name);
    if (!r) ranges.set(name, (r = { lo: new Float64Array(L), hi: new Float64Array(L) }));
    for (let row = 0; row < m.rows; row++) {
      const t = row % L;
      let lo = r.lo[t]!;
      let hi = r.hi[t]!;
      for (let j = 0; j < cols; j++) {
        const v = x[row * cols + j]!;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
      r.lo[t] = lo;
      r.hi[t] = hi;
    }
  });
  ops.endForward();
  const qmax = aQmax(abits);
  const quantize = (site: LinearSite, tap: string, reversed: boolean): void => {
    const r = ranges.get(tap);
    if (!r) throw new Error(`quantizeForSpeed: no activations observed at ${tap}`);
    const actScale = new Float32Array(L);
    const actZero = new Int32Array(L);
    for (let t = 0; t < L; t++) {
      const src = reversed ? L - 1 - t : t;
      const s = Math.max(r.hi[src]! - r.lo[src]!, 1e-8) / qmax;
      actScale[t] = s;
      actZero[t] = Math.max(0, Math.min(qmax, Math.round(-r.lo[src]! / Math.fround(s))));
    }
    const { qweight, wscale } = quantizeWeightsPerChannel(site.weight.data, site.outFeatures, site.inFeatures, wbits);
    const q: LinearQuant = {
      wbits, abits, granularity: 'per-token-static', qweight, wscale, smooth: new Float32Array(site.inFeatures).fill(1), actScale, actZero,
    };
    site.quant = q;
  };
  for (let i = 0; i < model.layers.length; i++) {
    const lin = model.linears(i);
    for (const [name, site] of Object.entries(lin)) quantize(site, `layers.${i}.mixer.${name}.in`, site.reversedTokens);
  }
  model.quantMetadata = {
    method: 'rtn', wbits, abits, granularity: 'per-token-static', weight_granularity: 'per-channel', calib_size: opts.calibImages ?? 1, seed,
    calib_data: 'seeded random images (speed benchmark only)',
  };
  return model;
}
