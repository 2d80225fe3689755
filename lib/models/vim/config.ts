import { formatShape, type Shape } from '../../tensor/tensor.js';

/** Vim hyper-parameters, as stored in `__metadata__.config` (the fixtures' and our files' format). */
export interface VimConfig {
  arch: 'vim';
  img_size: number;
  patch_size: number;
  stride: number;
  in_chans: number;
  embed_dim: number;
  depth: number;
  d_state: number;
  expand: number;
  d_conv: number;
  num_classes: number;
  eps: number;
}

/** Quantities every consumer of a config derives the same way. */
export interface VimDims {
  dInner: number;
  dtRank: number;
  grid: number;
  /** Tokens per image: grid² patches + the class token. */
  seqLen: number;
  /** Index of the class token ("middle class token": grid²/2, rounded down). */
  clsPos: number;
  /** Width of x_proj's output: dt_rank + 2·d_state. */
  xProjOut: number;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

const INT_FIELDS = ['img_size', 'patch_size', 'stride', 'in_chans', 'embed_dim', 'depth', 'd_state', 'expand', 'd_conv', 'num_classes'] as const;
const LIMITS: Record<(typeof INT_FIELDS)[number], [number, number]> = {
  img_size: [1, 8192], patch_size: [1, 1024], stride: [1, 1024], in_chans: [1, 64], embed_dim: [1, 16384],
  depth: [1, 1024], d_state: [1, 1024], expand: [1, 64], d_conv: [1, 64], num_classes: [1, 1_000_000],
};

export function vimDims(c: VimConfig): VimDims {
  const dInner = c.expand * c.embed_dim;
  const grid = Math.floor((c.img_size - c.patch_size) / c.stride) + 1;
  const dtRank = Math.ceil(c.embed_dim / 16);
  return { dInner, dtRank, grid, seqLen: grid * grid + 1, clsPos: Math.floor((grid * grid) / 2), xProjOut: dtRank + 2 * c.d_state };
}

/** Validates a parsed `__metadata__.config` object; `where` names the file for errors. */
export function parseVimConfig(raw: unknown, where: string): VimConfig {
  if (typeof raw === 'string') {
    try {
      raw = JSON.parse(raw);
    } catch {
      throw new ConfigError(`${where}: __metadata__.config is not valid JSON`);
    }
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new ConfigError(`${where}: config must be a JSON object`);
  const o = raw as Record<string, unknown>;
  if (o.arch !== undefined && o.arch !== 'vim') throw new ConfigError(`${where}: unsupported arch ${JSON.stringify(o.arch)} (expected "vim")`);
  const c: Record<string, unknown> = { arch: 'vim' };
  for (const f of INT_FIELDS) {
    const v = o[f];
    const [lo, hi] = LIMITS[f];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) {
      throw new ConfigError(`${where}: config.${f} must be an integer in [${lo}, ${hi}], got ${JSON.stringify(v)}`);
    }
    c[f] = v;
  }
  const eps = o.eps ?? 1e-5;
  if (typeof eps !== 'number' || !(eps > 0 && eps < 1)) throw new ConfigError(`${where}: config.eps must be a number in (0, 1), got ${JSON.stringify(o.eps)}`);
  c.eps = eps;
  const cfg = c as unknown as VimConfig;
  if (cfg.patch_size > cfg.img_size) throw new ConfigError(`${where}: patch_size ${cfg.patch_size} exceeds img_size ${cfg.img_size}`);
  if ((cfg.img_size - cfg.patch_size) % cfg.stride !== 0) {
    throw new ConfigError(`${where}: (img_size − patch_size) = ${cfg.img_size - cfg.patch_size} is not a multiple of stride ${cfg.stride}`);
  }
  return cfg;
}

/** Every tensor a Vim state dict holds, with its shape. */
export function vimTensorShapes(c: VimConfig): Map<string, Shape> {
  const d = vimDims(c);
  const D = c.embed_dim;
  const m = new Map<string, Shape>();
  m.set('cls_token', [1, 1, D]);
  m.set('pos_embed', [1, d.seqLen, D]);
  m.set('patch_embed.proj.weight', [D, c.in_chans, c.patch_size, c.patch_size]);
  m.set('patch_embed.proj.bias', [D]);
  for (let i = 0; i < c.depth; i++) {
    const p = `layers.${i}.`;
    m.set(p + 'norm.weight', [D]);
    m.set(p + 'mixer.in_proj.weight', [2 * d.dInner, D]);
    m.set(p + 'mixer.out_proj.weight', [D, d.dInner]);
    for (const s of ['', '_b']) {
      m.set(`${p}mixer.A${s}_log`, [d.dInner, c.d_state]);
      m.set(`${p}mixer.D${s}`, [d.dInner]);
      m.set(`${p}mixer.conv1d${s}.weight`, [d.dInner, 1, c.d_conv]);
      m.set(`${p}mixer.conv1d${s}.bias`, [d.dInner]);
      m.set(`${p}mixer.x_proj${s}.weight`, [d.xProjOut, d.dInner]);
      m.set(`${p}mixer.dt_proj${s}.weight`, [d.dInner, d.dtRank]);
      m.set(`${p}mixer.dt_proj${s}.bias`, [d.dInner]);
    }
  }
  m.set('norm_f.weight', [D]);
  m.set('head.weight', [c.num_classes, D]);
  m.set('head.bias', [c.num_classes]);
  return m;
}

/** Checks that `shapes` holds exactly the config's tensors with the config's shapes. */
export function checkVimTensors(c: VimConfig, shapes: ReadonlyMap<string, Shape>, where: string, opts: { allowExtra?: (name: string) => boolean } = {}): void {
  const expected = vimTensorShapes(c);
  for (const [name, shape] of expected) {
    const got = shapes.get(name);
    if (!got) throw new ConfigError(`${where}: missing tensor ${name} (expected shape ${formatShape(shape)})`);
    if (got.length !== shape.length || got.some((v, i) => v !== shape[i])) {
      throw new ConfigError(`${where}: tensor ${name} has shape ${formatShape(got)}, the config needs ${formatShape(shape)}`);
    }
  }
  for (const name of shapes.keys()) {
    if (!expected.has(name) && !(opts.allowExtra?.(name) ?? false)) {
      throw new ConfigError(`${where}: unexpected tensor ${name} for a Vim with this config`);
    }
  }
}

function need(shapes: ReadonlyMap<string, Shape>, name: string, rank: number, where: string): Shape {
  const s = shapes.get(name);
  if (!s) throw new ConfigError(`${where}: not a Vim state dict (no tensor ${name})`);
  if (s.length !== rank) throw new ConfigError(`${where}: tensor ${name} has rank ${s.length}, expected ${rank}`);
  return s;
}

/**
 * Infers the config of an official Vim checkpoint (which carries none) from its tensor shapes.
 * The image size is not recorded anywhere: it defaults to 224 (every released Vim) and the
 * stride is solved from pos_embed's length; pass `imgSize` for other resolutions.
 */
export function inferVimConfig(shapes: ReadonlyMap<string, Shape>, where: string, opts: { imgSize?: number; eps?: number } = {}): VimConfig {
  const pe = need(shapes, 'patch_embed.proj.weight', 4, where);
  const [D, inChans, ph, pw] = pe as [number, number, number, number];
  if (ph !== pw) throw new ConfigError(`${where}: non-square patches (${ph}×${pw}) are not supported`);
  let depth = 0;
  while (shapes.has(`layers.${depth}.mixer.in_proj.weight`)) depth++;
  if (depth === 0) throw new ConfigError(`${where}: not a Vim state dict (no layers.0.mixer.in_proj.weight)`);
  const inProj = need(shapes, 'layers.0.mixer.in_proj.weight', 2, where);
  const dInner = inProj[0]! / 2;
  if (!Number.isInteger(dInner) || dInner % D !== 0) throw new ConfigError(`${where}: in_proj has ${inProj[0]} outputs, not 2·expand·${D}`);
  const aLog = need(shapes, 'layers.0.mixer.A_log', 2, where);
  const conv = need(shapes, 'layers.0.mixer.conv1d.weight', 3, where);
  const head = need(shapes, 'head.weight', 2, where);
  const pos = need(shapes, 'pos_embed', 3, where);
  const patches = pos[1]! - 1;
  const grid = Math.round(Math.sqrt(patches));
  if (grid < 1 || grid * grid !== patches) {
    throw new ConfigError(`${where}: pos_embed has ${pos[1]} positions, not grid²+1 (only the middle-class-token Vim is supported)`);
  }
  const imgSize = opts.imgSize ?? 224;
  let stride = ph;
  if (grid > 1) {
    stride = (imgSize - ph) / (grid - 1);
    if (!Number.isInteger(stride) || stride < 1) {
      throw new ConfigError(`${where}: a ${grid}×${grid} grid of ${ph}-pixel patches does not fit a ${imgSize}-pixel image with an integer stride; pass the image size`);
    }
  }
  const cfg: VimConfig = {
    arch: 'vim', img_size: imgSize, patch_size: ph, stride, in_chans: inChans, embed_dim: D, depth,
    d_state: aLog[1]!, expand: dInner / D, d_conv: conv[2]!, num_classes: head[0]!, eps: opts.eps ?? 1e-5,
  };
  return parseVimConfig(cfg, where);
}
