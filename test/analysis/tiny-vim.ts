import { parseVimConfig, vimTensorShapes, type VimConfig } from '../../lib/models/vim/config.js';
import { VimModel } from '../../lib/models/vim/model.js';
import { Tensor } from '../../lib/tensor/tensor.js';

/** Deterministic uniform [0, 1) numbers (mulberry32), independent of the library's PRNG. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Standard normal samples (Box–Muller). */
export function gaussian(rand: () => number): () => number {
  return () => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
}

/**
 * A small random Vim with ragged sizes (D = 10, L = 10, class token at 4, E = 20, dt_rank 1)
 * and, like real Vims, a few RMSNorm channels scaled up so that in_proj sees outlier channels.
 */
export function tinyVim(seed = 1, opts: { depth?: number; outlierChannels?: number[]; outlierScale?: number } = {}): VimModel {
  const config: VimConfig = parseVimConfig({
    arch: 'vim', img_size: 12, patch_size: 4, stride: 4, in_chans: 1, embed_dim: 10, depth: opts.depth ?? 2,
    d_state: 4, expand: 2, d_conv: 4, num_classes: 3, eps: 1e-5,
  }, 'tiny');
  const rand = rng(seed);
  const normal = gaussian(rand);
  const tensors = new Map<string, Tensor<'F32'>>();
  for (const [name, shape] of vimTensorShapes(config)) {
    const t = new Tensor('F32', shape);
    const fanIn = shape.length >= 2 ? shape.slice(1).reduce((a, b) => a * b, 1) : 1;
    const d = t.data;
    if (name.endsWith('norm.weight') || name === 'norm_f.weight') {
      for (let i = 0; i < d.length; i++) d[i] = 0.8 + 0.4 * rand();
    } else if (/A(_b)?_log$/.test(name)) {
      const N = shape[1]!;
      for (let i = 0; i < d.length; i++) d[i] = Math.log(1 + (i % N));
    } else if (/\.D(_b)?$/.test(name)) {
      d.fill(1);
    } else if (/dt_proj(_b)?\.bias$/.test(name)) {
      // softplus⁻¹ of Δ in [1e-3, 1e-1], as Mamba initialises it.
      for (let i = 0; i < d.length; i++) {
        const dt = Math.exp(Math.log(1e-3) + rand() * (Math.log(1e-1) - Math.log(1e-3)));
        d[i] = dt + Math.log(-Math.expm1(-dt));
      }
    } else {
      const s = name.endsWith('bias') ? 0.1 : 1 / Math.sqrt(fanIn);
      for (let i = 0; i < d.length; i++) d[i] = s * normal();
    }
    tensors.set(name, t);
  }
  const scale = opts.outlierScale ?? 30;
  for (let i = 0; i < config.depth; i++) {
    const w = tensors.get(`layers.${i}.norm.weight`)!.data;
    for (const j of opts.outlierChannels ?? [3, 7]) w[j]! *= scale;
  }
  return new VimModel(config, tensors, {});
}

/** Random images [n, 1, 12, 12] of unit scale (already "normalized"). */
export function tinyImages(n: number, seed = 2): Tensor<'F32'> {
  const normal = gaussian(rng(seed));
  const t = new Tensor('F32', [n, 1, 12, 12]);
  for (let i = 0; i < t.data.length; i++) t.data[i] = normal();
  return t;
}
