import { checkDirections, V_REVERSE_MODES, type VReverse } from '../common/scan-order.js';
import { checkTensorShapes, configObject, countWhile, epsField, intField, needShape, type ShapeMap } from '../common/tensors.js';
import { ConfigError } from '../vim/config.js';
import type { Shape } from '../../tensor/tensor.js';

/**
 * LocalVim hyper-parameters (LocalMamba's VisionMamba + MultiMamba), as we store them in
 * `__metadata__.config`. Semantics: ../shared/fixtures/backbones/SPEC.md §3 and docs/backbones.md.
 */
export interface LocalVimConfig {
  arch: 'localvim';
  img_size: number;
  patch_size: number;
  in_chans: number;
  embed_dim: number;
  depth: number;
  d_state: number;
  /** d_inner = expand · embed_dim */
  expand: number;
  d_conv: number;
  dt_rank: number;
  num_classes: number;
  /** RMSNorm eps. */
  eps: number;
  /** RoPE on the hidden and residual streams (local_vim_tiny); tables are stored tensors. */
  rope: boolean;
  /** Middle class token (local_vim_tiny_middle_cls_token); otherwise mean pooling. */
  cls_token: boolean;
  /** Per layer, the scan directions (h, v, wK, each optionally _flip). */
  directions: string[][];
  /** How v / v_flip outputs go back onto the grid; only matters on non-square grids. */
  v_reverse: VReverse;
}

export interface LocalVimDims {
  dInner: number;
  /** Patch grid (square: img_size padded up to a multiple of patch_size). */
  grid: number;
  patches: number;
  /** Tokens per image in the residual stream: patches (+1 with the class token). */
  seqLen: number;
  /** Row of the class token (patches/2, rounded down), or null. */
  clsPos: number | null;
  xProjOut: number;
  /** BiAttn hidden width: ⌊d_inner/8⌋. */
  attnHidden: number;
}

export function localVimDims(c: LocalVimConfig): LocalVimDims {
  const dInner = c.expand * c.embed_dim;
  const grid = Math.ceil(c.img_size / c.patch_size);
  const patches = grid * grid;
  const clsPos = c.cls_token ? Math.floor(patches / 2) : null;
  return {
    dInner, grid, patches, seqLen: patches + (c.cls_token ? 1 : 0), clsPos,
    xProjOut: c.dt_rank + 2 * c.d_state, attnHidden: Math.floor(dInner / 8),
  };
}

/** The directions of the released local_vim_tiny (and its middle-cls variant), layer by layer. */
export const LOCAL_VIM_TINY_DIRECTIONS: readonly string[] = [
  'h v_flip w7 w7_flip', 'h_flip w2_flip w7 w7_flip', 'h h_flip v w7', 'h h_flip v v_flip', 'h h_flip v v_flip',
  'h h_flip v v_flip', 'h_flip v v_flip w7', 'h_flip v v_flip w2_flip', 'h h_flip v v_flip', 'h h_flip v v_flip',
  'h v v_flip w2', 'h v v_flip w2_flip', 'h h_flip v_flip w7', 'h_flip v v_flip w2', 'h h_flip v v_flip',
  'h v w2 w2_flip', 'v v_flip w2 w7', 'h h_flip v w2', 'h h_flip w2_flip w7', 'v v_flip w2 w2_flip',
];

/** Every tensor a LocalVim state dict holds, with its shape. */
export function localVimTensorShapes(c: LocalVimConfig): Map<string, Shape> {
  const d = localVimDims(c);
  const D = c.embed_dim;
  const E = d.dInner;
  const m = new Map<string, Shape>();
  if (c.cls_token) m.set('cls_token', [1, 1, D]);
  m.set('pos_embed', [1, d.seqLen, D]);
  m.set('patch_embed.proj.weight', [D, c.in_chans, c.patch_size, c.patch_size]);
  m.set('patch_embed.proj.bias', [D]);
  if (c.rope) {
    m.set('rope.freqs_cos', [d.patches, D]);
    m.set('rope.freqs_sin', [d.patches, D]);
  }
  for (let i = 0; i < c.depth; i++) {
    const p = `layers.${i}.`;
    m.set(p + 'norm.weight', [D]);
    m.set(p + 'mixer.in_proj.weight', [2 * E, D]);
    m.set(p + 'mixer.out_proj.weight', [D, E]);
    c.directions[i]!.forEach((_, k) => {
      m.set(`${p}mixer.A_log_${k}`, [E, c.d_state]);
      m.set(`${p}mixer.D_${k}`, [E]);
      m.set(`${p}mixer.conv1d_${k}.weight`, [E, 1, c.d_conv]);
      m.set(`${p}mixer.conv1d_${k}.bias`, [E]);
      m.set(`${p}mixer.x_proj_${k}.weight`, [d.xProjOut, E]);
      m.set(`${p}mixer.dt_proj_${k}.weight`, [E, c.dt_rank]);
      m.set(`${p}mixer.dt_proj_${k}.bias`, [E]);
    });
    m.set(p + 'mixer.attn.norm.weight', [E]);
    m.set(p + 'mixer.attn.norm.bias', [E]);
    m.set(p + 'mixer.attn.global_reduce.weight', [d.attnHidden, E]);
    m.set(p + 'mixer.attn.global_reduce.bias', [d.attnHidden]);
    m.set(p + 'mixer.attn.channel_select.weight', [E, d.attnHidden]);
    m.set(p + 'mixer.attn.channel_select.bias', [E]);
  }
  m.set('norm_f.weight', [D]);
  m.set('head.weight', [c.num_classes, D]);
  m.set('head.bias', [c.num_classes]);
  return m;
}

/** True when the tensor names are those of a LocalVim (per-direction mixers with a BiAttn gate). */
export function looksLikeLocalVim(shapes: ShapeMap): boolean {
  return shapes.has('layers.0.mixer.x_proj_0.weight') && shapes.has('layers.0.mixer.attn.norm.weight');
}

export interface LocalVimHints {
  /** Image size (not in the state dict; default: the pos_embed grid × patch size). */
  imgSize?: number;
  directions?: string[][];
  vReverse?: VReverse;
}

function directionsField(raw: unknown, depth: number, where: string): string[][] {
  if (!Array.isArray(raw) || raw.length !== depth) {
    throw new ConfigError(`${where}: config.directions must list the directions of each of the ${depth} layers`);
  }
  return raw.map((l, i) => {
    try {
      return checkDirections(l, `${where}: config.directions[${i}]`);
    } catch (e) {
      throw new ConfigError((e as Error).message);
    }
  });
}

/**
 * The config of a LocalVim state dict: everything the shapes tell (dims, depth, d_state, dt_rank,
 * RoPE, class token, directions per layer as a count), merged with `raw` — our config, or the
 * official constructor arguments the fixtures store (`if_rope`, `if_cls_token`, …) — and with
 * hints. Directions come from raw, hints, or (for the released 20-layer tiny models) the official
 * list. Every tensor is then checked against the config.
 */
export function localVimConfig(shapes: ShapeMap, where: string, raw: unknown | null, hints: LocalVimHints = {}): LocalVimConfig {
  const what = 'LocalVim';
  const o = raw === null || raw === undefined ? {} : configObject(raw, where);
  if (o.arch !== undefined && o.arch !== 'localvim' && !(typeof o.arch === 'string' && o.arch.startsWith('LocalVim'))) {
    throw new ConfigError(`${where}: config.arch ${JSON.stringify(o.arch)} is not a LocalVim`);
  }
  // Official constructor switches we implement exactly one setting of.
  const mustBe = (key: string, want: unknown): void => {
    if (o[key] !== undefined && o[key] !== want) throw new ConfigError(`${where}: config.${key} = ${JSON.stringify(o[key])} is not supported (only ${JSON.stringify(want)})`);
  };
  mustBe('rms_norm', true);
  mustBe('residual_in_fp32', true);
  mustBe('final_pool_type', 'mean');
  mustBe('if_abs_pos_embed', true);
  if (o.if_rope !== undefined && o.if_rope_residual !== undefined && o.if_rope !== o.if_rope_residual) {
    throw new ConfigError(`${where}: RoPE on the hidden stream only (if_rope_residual false) is not supported`);
  }
  if (o.if_cls_token === true && o.use_middle_cls_token !== true) {
    throw new ConfigError(`${where}: only the middle class token (use_middle_cls_token) is supported`);
  }

  const pe = needShape(shapes, 'patch_embed.proj.weight', 4, where, what);
  const [D, inChans, ph, pw] = pe as [number, number, number, number];
  if (ph !== pw) throw new ConfigError(`${where}: non-square patches (${ph}×${pw}) are not supported`);
  const depth = countWhile(shapes, (i) => `layers.${i}.mixer.in_proj.weight`);
  if (depth === 0) throw new ConfigError(`${where}: not a LocalVim state dict (no layers.0.mixer.in_proj.weight)`);
  const inProj = needShape(shapes, 'layers.0.mixer.in_proj.weight', 2, where, what);
  const E = inProj[0]! / 2;
  if (!Number.isInteger(E) || E % D !== 0) throw new ConfigError(`${where}: in_proj has ${inProj[0]} outputs, not 2·expand·${D}`);
  const aLog = needShape(shapes, 'layers.0.mixer.A_log_0', 2, where, what);
  const conv = needShape(shapes, 'layers.0.mixer.conv1d_0.weight', 3, where, what);
  const dtProj = needShape(shapes, 'layers.0.mixer.dt_proj_0.weight', 2, where, what);
  const head = needShape(shapes, 'head.weight', 2, where, what);
  const pos = needShape(shapes, 'pos_embed', 3, where, what);
  const clsToken = shapes.has('cls_token');
  const rope = shapes.has('rope.freqs_cos');
  const patches = pos[1]! - (clsToken ? 1 : 0);
  const grid = Math.round(Math.sqrt(patches));
  if (grid < 1 || grid * grid !== patches) throw new ConfigError(`${where}: pos_embed has ${pos[1]} positions, not a square patch grid${clsToken ? ' + 1' : ''}`);

  const imgSize = hints.imgSize ?? (o.img_size === undefined ? grid * ph : intField(o, 'img_size', where, 1, 8192));
  if (Math.ceil(imgSize / ph) !== grid) {
    throw new ConfigError(`${where}: image size ${imgSize} gives a ${Math.ceil(imgSize / ph)}×${Math.ceil(imgSize / ph)} patch grid, pos_embed has ${grid}×${grid}`);
  }
  if (o.patch_size !== undefined && o.patch_size !== ph) throw new ConfigError(`${where}: config.patch_size ${JSON.stringify(o.patch_size)} disagrees with the ${ph}-pixel patch embedding`);
  if (o.embed_dim !== undefined && o.embed_dim !== D) throw new ConfigError(`${where}: config.embed_dim ${JSON.stringify(o.embed_dim)} disagrees with the tensors (${D})`);
  if (o.depth !== undefined && o.depth !== depth) throw new ConfigError(`${where}: config.depth ${JSON.stringify(o.depth)} disagrees with the tensors (${depth} layers)`);
  const wantRope = o.rope ?? o.if_rope;
  if (wantRope !== undefined && wantRope !== rope) throw new ConfigError(`${where}: config says RoPE ${wantRope ? 'on' : 'off'}, the tensors ${rope ? 'hold' : 'lack'} rope.freqs_cos`);
  const wantCls = o.cls_token ?? o.if_cls_token;
  if (wantCls !== undefined && wantCls !== clsToken) throw new ConfigError(`${where}: config says class token ${wantCls ? 'on' : 'off'}, the tensors ${clsToken ? 'hold' : 'lack'} cls_token`);

  let directions: string[][];
  if (hints.directions) directions = directionsField(hints.directions, depth, `${where} (directions option)`);
  else if (o.directions !== undefined) directions = directionsField(o.directions, depth, where);
  else if (depth === LOCAL_VIM_TINY_DIRECTIONS.length) directions = LOCAL_VIM_TINY_DIRECTIONS.map((s) => s.split(' '));
  else throw new ConfigError(`${where}: the scan directions of this ${depth}-layer LocalVim are not recorded; give them (directions option)`);
  for (let i = 0; i < depth; i++) {
    const n = countWhile(shapes, (k) => `layers.${i}.mixer.x_proj_${k}.weight`);
    if (n !== directions[i]!.length) throw new ConfigError(`${where}: layer ${i} has ${n} scan directions in its tensors, the config lists ${directions[i]!.length}`);
  }
  const vReverse = hints.vReverse ?? (o.v_reverse === undefined ? 'inverse' : o.v_reverse);
  if (!V_REVERSE_MODES.includes(vReverse as VReverse)) throw new ConfigError(`${where}: config.v_reverse must be one of ${V_REVERSE_MODES.join(', ')}`);

  const cfg: LocalVimConfig = {
    arch: 'localvim', img_size: imgSize, patch_size: ph, in_chans: inChans, embed_dim: D, depth,
    d_state: aLog[1]!, expand: E / D, d_conv: conv[2]!, dt_rank: dtProj[1]!, num_classes: head[0]!,
    eps: epsField(o, where), rope, cls_token: clsToken, directions, v_reverse: vReverse as VReverse,
  };
  checkTensorShapes(localVimTensorShapes(cfg), shapes, where, what);
  return cfg;
}
