import { checkTensorShapes, configObject, countWhile, epsField, intField, needShape, type ShapeMap } from '../common/tensors.js';
import { ConfigError } from '../vim/config.js';
import type { Shape } from '../../tensor/tensor.js';

/**
 * VMamba v2 hyper-parameters (the `vmambav2v_tiny_224` family: forward_type v05_noz, ln2d,
 * patch embed v2, downsample v3), as we store them in `__metadata__.config`. Semantics:
 * ../shared/fixtures/backbones/SPEC.md §2 and docs/backbones.md.
 */
export interface VMambaConfig {
  arch: 'vmamba';
  /** Nominal input size (VMamba takes any size; the runtime checks images against this one). */
  img_size: number;
  in_chans: number;
  num_classes: number;
  /** Channels per stage. */
  dims: number[];
  /** Blocks per stage. */
  depths: number[];
  d_state: number;
  /** d_inner = ssm_ratio · dim, per stage. */
  ssm_ratio: number;
  /** dt_rank per stage ("auto": ⌈dim/16⌉). */
  dt_ranks: number[];
  /** MLP hidden = mlp_ratio · dim (0: no MLP). */
  mlp_ratio: number;
  /** Depthwise conv kernel of SS2D. */
  d_conv: number;
  conv_bias: boolean;
  /** LayerNorm eps (1e-5 everywhere in this family). */
  eps: number;
}

export interface VMambaStageDims {
  dim: number;
  dInner: number;
  dtRank: number;
  mlpHidden: number;
  /** x_proj rows per direction: dt_rank + 2·d_state. */
  xProjOut: number;
}

/** Scan directions of SS2D (cross-scan): k0 = h, k1 = v, k2 = h_flip, k3 = v_flip. */
export const VMAMBA_DIRECTIONS = ['h', 'v', 'h_flip', 'v_flip'] as const;

export function vmambaStageDims(c: VMambaConfig, i: number): VMambaStageDims {
  const dim = c.dims[i]!;
  const dInner = Math.round(c.ssm_ratio * dim);
  const dtRank = c.dt_ranks[i]!;
  return { dim, dInner, dtRank, mlpHidden: Math.round(c.mlp_ratio * dim), xProjOut: dtRank + 2 * c.d_state };
}

/** Every tensor a VMamba v2 state dict holds, with its shape. */
export function vmambaTensorShapes(c: VMambaConfig): Map<string, Shape> {
  const m = new Map<string, Shape>();
  const C0 = c.dims[0]!;
  const half = Math.floor(C0 / 2);
  m.set('patch_embed.0.weight', [half, c.in_chans, 3, 3]);
  m.set('patch_embed.0.bias', [half]);
  m.set('patch_embed.2.weight', [half]);
  m.set('patch_embed.2.bias', [half]);
  m.set('patch_embed.5.weight', [C0, half, 3, 3]);
  m.set('patch_embed.5.bias', [C0]);
  m.set('patch_embed.7.weight', [C0]);
  m.set('patch_embed.7.bias', [C0]);
  const K = VMAMBA_DIRECTIONS.length;
  c.depths.forEach((depth, i) => {
    const s = vmambaStageDims(c, i);
    const C = s.dim;
    const E = s.dInner;
    for (let j = 0; j < depth; j++) {
      const p = `layers.${i}.blocks.${j}.`;
      m.set(p + 'norm.weight', [C]);
      m.set(p + 'norm.bias', [C]);
      m.set(p + 'op.in_proj.weight', [E, C]);
      m.set(p + 'op.conv2d.weight', [E, 1, c.d_conv, c.d_conv]);
      if (c.conv_bias) m.set(p + 'op.conv2d.bias', [E]);
      m.set(p + 'op.x_proj_weight', [K, s.xProjOut, E]);
      m.set(p + 'op.dt_projs_weight', [K, E, s.dtRank]);
      m.set(p + 'op.dt_projs_bias', [K, E]);
      m.set(p + 'op.A_logs', [K * E, c.d_state]);
      m.set(p + 'op.Ds', [K * E]);
      m.set(p + 'op.out_norm.weight', [E]);
      m.set(p + 'op.out_norm.bias', [E]);
      m.set(p + 'op.out_proj.weight', [C, E]);
      if (s.mlpHidden > 0) {
        m.set(p + 'norm2.weight', [C]);
        m.set(p + 'norm2.bias', [C]);
        m.set(p + 'mlp.fc1.weight', [s.mlpHidden, C]);
        m.set(p + 'mlp.fc1.bias', [s.mlpHidden]);
        m.set(p + 'mlp.fc2.weight', [C, s.mlpHidden]);
        m.set(p + 'mlp.fc2.bias', [C]);
      }
    }
    if (i + 1 < c.depths.length) {
      m.set(`layers.${i}.downsample.1.weight`, [c.dims[i + 1]!, C, 3, 3]);
      m.set(`layers.${i}.downsample.1.bias`, [c.dims[i + 1]!]);
      m.set(`layers.${i}.downsample.3.weight`, [c.dims[i + 1]!]);
      m.set(`layers.${i}.downsample.3.bias`, [c.dims[i + 1]!]);
    }
  });
  const last = c.dims[c.dims.length - 1]!;
  m.set('classifier.norm.weight', [last]);
  m.set('classifier.norm.bias', [last]);
  m.set('classifier.head.weight', [c.num_classes, last]);
  m.set('classifier.head.bias', [c.num_classes]);
  return m;
}

/** True when the tensor names are those of a VMamba (cross-scan SS2D blocks with an MLP). */
export function looksLikeVMamba(shapes: ShapeMap): boolean {
  return shapes.has('layers.0.blocks.0.op.x_proj_weight') && shapes.has('patch_embed.5.weight') && !shapes.has('layers.0.blocks.0.op.multi_scan.attn.norm.weight');
}

/**
 * The repository's 2025 single-file vmamba.py stores x_proj / dt_projs as `op.x_proj.weight`
 * (4·(R+2N), Di), `op.dt_projs.weight` (4·Di, R, …) and `op.dt_projs.bias` (4·Di); its loader maps
 * the classification/ names onto them. This maps them back (same data, reshaped) so one config
 * and graph serve both. Returns the names to rename: new name → [old name, shape].
 */
export function vmambaKeyRenames(shapes: ShapeMap): Map<string, { from: string; shape: Shape }> {
  const out = new Map<string, { from: string; shape: Shape }>();
  for (const [name, shape] of shapes) {
    const m = /^(layers\.\d+\.blocks\.\d+\.op\.)(x_proj\.weight|dt_projs\.weight|dt_projs\.bias)$/.exec(name);
    if (!m) continue;
    const p = m[1]!;
    const inProj = shapes.get(p + 'in_proj.weight');
    const aLogs = shapes.get(p + 'A_logs');
    if (!inProj || !aLogs) continue;
    const E = inProj[0]!;
    const K = aLogs[0]! / E;
    const size = shape.reduce((a, b) => a * b, 1);
    if (m[2] === 'x_proj.weight') out.set(p + 'x_proj_weight', { from: name, shape: [K, size / (K * E), E] });
    else if (m[2] === 'dt_projs.weight') out.set(p + 'dt_projs_weight', { from: name, shape: [K, E, size / (K * E)] });
    else out.set(p + 'dt_projs_bias', { from: name, shape: [K, E] });
  }
  return out;
}

export interface VMambaHints {
  imgSize?: number;
}

/**
 * The config of a VMamba v2 state dict: dims, depths, d_state, ssm_ratio, dt_rank, mlp_ratio and
 * the conv bias from the shapes, checked against `raw` — our config, or the official constructor
 * arguments the fixtures store (forward_type, norm_layer, … must name the supported variant).
 * Every tensor is then checked against the config.
 */
export function vmambaConfig(shapes: ShapeMap, where: string, raw: unknown | null, hints: VMambaHints = {}): VMambaConfig {
  const what = 'VMamba';
  const o = raw === null || raw === undefined ? {} : configObject(raw, where);
  if (o.arch !== undefined && o.arch !== 'vmamba' && !(typeof o.arch === 'string' && o.arch.startsWith('VMamba'))) {
    throw new ConfigError(`${where}: config.arch ${JSON.stringify(o.arch)} is not a VMamba`);
  }
  const mustBe = (key: string, want: unknown): void => {
    if (o[key] !== undefined && o[key] !== want) throw new ConfigError(`${where}: config.${key} = ${JSON.stringify(o[key])} is not supported (only ${JSON.stringify(want)}: the vmambav2v family)`);
  };
  mustBe('forward_type', 'v05_noz');
  mustBe('norm_layer', 'ln2d');
  mustBe('downsample_version', 'v3');
  mustBe('patchembed_version', 'v2');
  mustBe('patch_size', 4);
  mustBe('posembed', false);
  mustBe('gmlp', false);
  mustBe('ssm_act_layer', 'silu');
  mustBe('mlp_act_layer', 'gelu');

  const stem = needShape(shapes, 'patch_embed.0.weight', 4, where, what);
  const stem2 = needShape(shapes, 'patch_embed.5.weight', 4, where, what);
  const inChans = stem[1]!;
  const stages = countWhile(shapes, (i) => `layers.${i}.blocks.0.norm.weight`);
  if (stages === 0) throw new ConfigError(`${where}: not a VMamba state dict (no layers.0.blocks.0.norm.weight)`);
  const depths: number[] = [];
  const dims: number[] = [];
  const dtRanks: number[] = [];
  let dState = 0;
  let ratio = 0;
  let mlpRatio = 0;
  let dConv = 0;
  for (let i = 0; i < stages; i++) {
    depths.push(countWhile(shapes, (j) => `layers.${i}.blocks.${j}.norm.weight`));
    const p = `layers.${i}.blocks.0.`;
    const C = needShape(shapes, p + 'norm.weight', 1, where, what)[0]!;
    const E = needShape(shapes, p + 'op.in_proj.weight', 2, where, what)[0]!;
    const dt = needShape(shapes, p + 'op.dt_projs_weight', 3, where, what);
    const aLogs = needShape(shapes, p + 'op.A_logs', 2, where, what);
    const conv = needShape(shapes, p + 'op.conv2d.weight', 4, where, what);
    const fc1 = shapes.get(p + 'mlp.fc1.weight');
    dims.push(C);
    dtRanks.push(dt[2]!);
    if (i === 0) {
      dState = aLogs[1]!;
      ratio = E / C;
      mlpRatio = fc1 ? fc1[0]! / C : 0;
      dConv = conv[2]!;
    }
  }
  const head = needShape(shapes, 'classifier.head.weight', 2, where, what);
  if (stem2[0] !== dims[0]) throw new ConfigError(`${where}: the stem makes ${stem2[0]} channels, stage 0 has ${dims[0]}`);
  if (o.ssm_d_state !== undefined && o.ssm_d_state !== dState) throw new ConfigError(`${where}: config.ssm_d_state ${JSON.stringify(o.ssm_d_state)} disagrees with the tensors (${dState})`);
  if (o.ssm_ratio !== undefined && o.ssm_ratio !== ratio) throw new ConfigError(`${where}: config.ssm_ratio ${JSON.stringify(o.ssm_ratio)} disagrees with the tensors (${ratio})`);
  if (o.dims !== undefined) {
    const want = typeof o.dims === 'number' ? dims.map((_, i) => (o.dims as number) * 2 ** i) : o.dims;
    if (JSON.stringify(want) !== JSON.stringify(dims)) throw new ConfigError(`${where}: config.dims ${JSON.stringify(o.dims)} disagrees with the tensors (${JSON.stringify(dims)})`);
  }
  if (o.depths !== undefined && JSON.stringify(o.depths) !== JSON.stringify(depths)) throw new ConfigError(`${where}: config.depths ${JSON.stringify(o.depths)} disagrees with the tensors (${JSON.stringify(depths)})`);
  if (o.ssm_dt_rank !== undefined && o.ssm_dt_rank !== 'auto' && dtRanks.some((r) => r !== o.ssm_dt_rank)) {
    throw new ConfigError(`${where}: config.ssm_dt_rank ${JSON.stringify(o.ssm_dt_rank)} disagrees with the tensors (${JSON.stringify(dtRanks)})`);
  }
  const imgSize = hints.imgSize ?? intField(o, o.img_size !== undefined ? 'img_size' : 'imgsize', where, 8, 8192, 224);
  const cfg: VMambaConfig = {
    arch: 'vmamba', img_size: imgSize, in_chans: inChans, num_classes: head[0]!, dims, depths, d_state: dState,
    ssm_ratio: ratio, dt_ranks: dtRanks, mlp_ratio: mlpRatio, d_conv: dConv,
    conv_bias: shapes.has('layers.0.blocks.0.op.conv2d.bias'), eps: epsField(o, where),
  };
  if (dConv % 2 !== 1) throw new ConfigError(`${where}: the SS2D depthwise conv has an even kernel (${dConv}); only odd ("same") kernels are supported`);
  checkTensorShapes(vmambaTensorShapes(cfg), shapes, where, what);
  return cfg;
}
