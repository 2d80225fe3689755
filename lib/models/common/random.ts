/**
 * The released LocalVim / VMamba v2 / LocalVMamba sizes with random weights, for benchmarks and
 * tests that need the real shapes but no checkpoint (official checkpoints are not shipped).
 * Configs are those config inference gives for the released models' key lists (checked against
 * ../shared/fixtures/backbones/KEYS.json in test/models/backbones-runtime.test.ts).
 */
import { Tensor, type Shape } from '../../tensor/tensor.js';
import { LOCAL_VIM_TINY_DIRECTIONS, localVimTensorShapes, type LocalVimConfig } from '../localvim/config.js';
import { LocalVimModel } from '../localvim/model.js';
import { LOCAL_VSSM_TINY_DIRECTIONS, localVMambaTensorShapes, type LocalVMambaConfig } from '../localvmamba/config.js';
import { LocalVMambaModel } from '../localvmamba/model.js';
import { vmambaTensorShapes, type VMambaConfig } from '../vmamba/config.js';
import { VMambaModel } from '../vmamba/model.js';
import type { BackboneConfig } from './family.js';
import type { BackboneModel } from './forward.js';

const split = (list: readonly string[]): string[][] => list.map((s) => s.split(' '));

/**
 * The released tiny models by their official names (ImageNet-1k classifiers, 224×224): the four
 * whose key lists KEYS.json records, so their shapes are checked, not assumed.
 */
export const BACKBONE_ARCHS = {
  local_vim_tiny: (): LocalVimConfig => localVimTiny(true, false),
  local_vim_tiny_middle_cls_token: (): LocalVimConfig => localVimTiny(false, true),
  vmamba_v2v_tiny_224: (): VMambaConfig => ({
    arch: 'vmamba', img_size: 224, in_chans: 3, num_classes: 1000, dims: [96, 192, 384, 768], depths: [2, 2, 8, 2],
    d_state: 1, ssm_ratio: 1, dt_ranks: [6, 12, 24, 48], mlp_ratio: 4, d_conv: 3, conv_bias: false, eps: 1e-5,
  }),
  local_vssm_tiny: (): LocalVMambaConfig => localVssm([2, 2, 9, 2], LOCAL_VSSM_TINY_DIRECTIONS),
} as const;
export type BackboneArch = keyof typeof BACKBONE_ARCHS;

export function isBackboneArch(s: string): s is BackboneArch {
  return Object.prototype.hasOwnProperty.call(BACKBONE_ARCHS, s);
}

function localVimTiny(rope: boolean, clsToken: boolean): LocalVimConfig {
  return {
    arch: 'localvim', img_size: 224, patch_size: 16, in_chans: 3, embed_dim: 192, depth: 20, d_state: 16, expand: 2, d_conv: 4,
    dt_rank: 12, num_classes: 1000, eps: 1e-5, rope, cls_token: clsToken, directions: split(LOCAL_VIM_TINY_DIRECTIONS), v_reverse: 'inverse',
  };
}

function localVssm(depths: number[], directions: readonly string[]): LocalVMambaConfig {
  return {
    arch: 'localvmamba', img_size: 224, patch_size: 4, in_chans: 3, num_classes: 1000, dims: [96, 192, 384, 768], depths,
    d_state: 16, ssm_ratio: 2, dt_ranks: [6, 12, 24, 48], d_conv: 3, eps: 1e-5, directions: split(directions), v_reverse: 'inverse',
  };
}

export function backboneTensorShapes(c: BackboneConfig): Map<string, Shape> {
  switch (c.arch) {
    case 'localvim': return localVimTensorShapes(c);
    case 'vmamba': return vmambaTensorShapes(c);
    case 'localvmamba': return localVMambaTensorShapes(c);
  }
}

/** A seeded generator of uniforms in [0, 1) (xorshift32 over a per-tensor seed: generation order does not matter). */
function uniforms(name: string, seed: number): () => number {
  let s = (0x9e3779b9 ^ seed) >>> 0;
  for (let i = 0; i < name.length; i++) s = Math.imul(s ^ name.charCodeAt(i), 0x01000193) >>> 0;
  if (s === 0) s = 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
}

/**
 * Values of one tensor, of the magnitudes the official initialisations give: linears and convs
 * uniform ±1/√fan_in, norms 1 and 0, A_log = log(1..d_state) per row, D = 1, dt biases the
 * inverse softplus of dt ~ logUniform[1e-3, 1e-1], position embeddings/class token ±0.02, RoPE
 * tables cos/sin of arbitrary angles.
 */
function initTensor(name: string, shape: Shape, r: () => number): Float32Array {
  const n = shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(n);
  const fill = (f: (i: number) => number): Float32Array => {
    for (let i = 0; i < n; i++) out[i] = f(i);
    return out;
  };
  const uniform = (bound: number): Float32Array => fill(() => (2 * r() - 1) * bound);
  const leaf = name.slice(name.lastIndexOf('.') + 1);
  if (/^A_logs?(_\d+)?$/.test(leaf)) return fill((i) => Math.log(1 + (i % shape[shape.length - 1]!)));
  if (/^Ds?(_\d+)?$/.test(leaf)) return out.fill(1);
  if (name === 'rope.freqs_cos' || name === 'rope.freqs_sin') {
    const f = name.endsWith('cos') ? Math.cos : Math.sin;
    return fill(() => f(r() * 2 * Math.PI));
  }
  if (name === 'cls_token' || name === 'pos_embed') return uniform(0.02);
  if (/dt_proj(_\d+)?\.bias$|dt_projs_bias$/.test(name)) {
    return fill(() => {
      const dt = Math.exp(Math.log(1e-3) + r() * (Math.log(1e-1) - Math.log(1e-3)));
      return dt + Math.log(-Math.expm1(-dt)); // softplus⁻¹(dt)
    });
  }
  if (shape.length === 1) return name.endsWith('.weight') ? out.fill(1) : uniform(0.02); // norm weights; biases
  // Stacked per-direction projections [K, out, in]: the fan-in is the last dimension.
  const fanIn = /x_proj_weight$|dt_projs_weight$/.test(name) ? shape[shape.length - 1]! : n / shape[0]!;
  return uniform(1 / Math.sqrt(fanIn));
}

/** A released model's shapes with random weights, deterministic in (arch, seed). Its predictions mean nothing. */
export function randomBackboneModel(arch: BackboneArch, seed = 0): BackboneModel {
  const config = BACKBONE_ARCHS[arch]();
  const tensors = new Map<string, Tensor<'F32'>>();
  for (const [name, shape] of backboneTensorShapes(config)) tensors.set(name, new Tensor('F32', shape, initTensor(name, shape, uniforms(name, seed))));
  const metadata = { config: JSON.stringify(config), source: `random weights (seed ${seed}) in the shapes of ${arch}` };
  switch (config.arch) {
    case 'localvim': return new LocalVimModel(config, tensors, metadata);
    case 'vmamba': return new VMambaModel(config, tensors, metadata);
    case 'localvmamba': return new LocalVMambaModel(config, tensors, metadata);
  }
}

/** Images [B, C, img_size, img_size] of a smooth pattern plus noise, deterministic in seed (already "normalized"). */
export function randomBackboneImages(model: BackboneModel, batch: number, seed = 1, size = model.config.img_size): Tensor<'F32'> {
  const C = model.config.in_chans;
  const r = uniforms('images', seed);
  const data = new Float32Array(batch * C * size * size);
  for (let i = 0; i < data.length; i++) data[i] = Math.sin(i * 0.0137 + seed) + (r() - 0.5);
  return new Tensor('F32', [batch, C, size, size], data);
}

/**
 * n images [n, C, H, W] that differ from each other (already "normalized"): per image and channel
 * an oriented sinusoid of its own frequency, phase, amplitude and offset, plus uniform noise;
 * deterministic in seed. Unlike randomBackboneImages (one pattern, fresh noise), a random head
 * tells these apart, so agreement of predictions between precisions means something.
 */
export function syntheticImages(n: number, C: number, H: number, W: number, seed: number): Tensor<'F32'> {
  const r = uniforms('synthetic images', seed);
  const data = new Float32Array(n * C * H * W);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < C; c++) {
      const fx = 0.02 + 0.4 * r(), fy = 0.02 + 0.4 * r(), phase = 2 * Math.PI * r();
      const amp = 0.4 + 1.6 * r(), offset = 1.2 * (r() - 0.5);
      const base = (i * C + c) * H * W;
      for (let y = 0; y < H; y++) {
        for (let x = 0; x < W; x++) data[base + y * W + x] = amp * Math.sin(fx * x + fy * y + phase) + offset + 0.8 * (r() - 0.5);
      }
    }
  }
  return new Tensor('F32', [n, C, H, W], data);
}
