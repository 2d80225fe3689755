import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../backend/addon.js';
import { readSafetensors } from '../io/safetensors.js';
import { isQuantTensorName, parseQuantMetadata, QUANT_FORMAT, readSiteQuant, reconstructWeight, type QuantMetadata } from '../quant/file.js';
import { formatShape, Tensor, type Shape } from '../tensor/tensor.js';
import type { LinearQuant } from '../quant/params.js';
import { quantizableSites, siteWeightSource } from './common/sites.js';
import { checkVimTensors, ConfigError, inferVimConfig, parseVimConfig, vimDims, type VimConfig } from './vim/config.js';
import { VIM_LINEARS, VimModel } from './vim/model.js';
import type { BackboneModel } from './common/forward.js';
import { backboneConfig, canonicalTensorMap, detectFamily, FAMILY_NAMES, modelFamily, type BackboneConfig, type BackboneHints, type ModelFamily } from './common/family.js';
import { LocalVimModel } from './localvim/model.js';
import { LocalVMambaModel } from './localvmamba/model.js';
import { VMambaModel } from './vmamba/model.js';

/** Models shipped inside the package, by name. */
export const BUILTIN_MODELS: Readonly<Record<string, string>> = {
  'vim-fmnist': 'assets/models/vim-fmnist.safetensors',
};

export class ModelLoadError extends Error {
  override name = 'ModelLoadError';
}

/** A built-in model name or a path → a file path (existence checked). */
export function resolveModelPath(nameOrPath: string): string {
  const builtin = BUILTIN_MODELS[nameOrPath];
  const path = builtin ? join(packageRoot(), builtin) : nameOrPath;
  if (!existsSync(path)) {
    throw new ModelLoadError(builtin ? `built-in model ${nameOrPath} is missing from the package (${path})` : `model file not found: ${path}`);
  }
  return path;
}

export interface LoadModelOptions {
  /** Image size for config inference of official checkpoints (default 224). */
  imgSize?: number;
  /** Which state dict of a training checkpoint (.pth) to use: model (default), model_ema, … */
  key?: string;
}

function toF32(t: Tensor, name: string, where: string): Tensor<'F32'> {
  if (t.dtype === 'F32') return t as Tensor<'F32'>;
  if (t.dtype === 'F16' || t.dtype === 'BF16' || t.dtype === 'F64') return t.toFloat32();
  throw new ModelLoadError(`${where}: tensor ${name} has dtype ${t.dtype}, expected a float type`);
}

function quantizedSiteNames(config: VimConfig): string[] {
  const names: string[] = [];
  for (let i = 0; i < config.depth; i++) for (const l of VIM_LINEARS) names.push(`layers.${i}.mixer.${l}`);
  return names;
}

/**
 * Loads a Vim model: a built-in name, an FP safetensors file (ours, the fixtures', or an official
 * checkpoint converted by `ptq4vm convert`), or a quantized file written by `ptq4vm calibrate`.
 * Everything is validated against the config; errors name the file and the tensor.
 */
export async function loadVimModel(nameOrPath: string, opts: LoadModelOptions = {}): Promise<VimModel> {
  const path = resolveModelPath(nameOrPath);
  if (/\.(pth|pt)$/i.test(path)) {
    const { readPthStateDict } = await import('../io/pth-model.js');
    const { tensors, metadata, where } = await readPthStateDict(path, { imgSize: opts.imgSize, key: opts.key });
    return buildModel(tensors, metadata, where, opts);
  }
  const file = await readSafetensors(path);
  return buildModel(file.tensors, file.metadata, path, opts);
}

/** Builds a VimModel from named tensors and metadata (shared by every file kind). */
export function buildModel(tensors: ReadonlyMap<string, Tensor>, metadata: Record<string, string>, where: string, opts: LoadModelOptions = {}): VimModel {
  const shapes = new Map<string, Shape>([...tensors].map(([k, v]) => [k, v.shape]));
  const family = detectFamily(shapes);
  if (family !== null && family !== 'vim') {
    throw new ModelLoadError(`${where}: a ${FAMILY_NAMES[family]} model; this takes Vim models only for now (LocalVim, VMamba and LocalVMamba run with info, convert, calibrate, eval, infer, serve and bench)`);
  }
  const quantized = metadata.format === QUANT_FORMAT;
  if (metadata.format !== undefined && !quantized && !metadata.format.startsWith('ptq4vm-fp/')) {
    throw new ModelLoadError(`${where}: unknown __metadata__.format ${JSON.stringify(metadata.format)}`);
  }
  let config: VimConfig;
  try {
    if (metadata.config !== undefined) config = parseVimConfig(metadata.config, where);
    else if (quantized) throw new ConfigError(`${where}: quantized model without __metadata__.config`);
    else config = inferVimConfig(shapes, where, { imgSize: opts.imgSize });
  } catch (e) {
    throw new ModelLoadError((e as Error).message);
  }
  const fp = new Map<string, Tensor<'F32'>>();
  let quantMeta: QuantMetadata | null = null;
  const siteQuant = new Map<string, ReturnType<typeof readSiteQuant>>();
  if (quantized) {
    quantMeta = parseQuantMetadata(metadata.quant, where);
    const L = vimDims(config).seqLen;
    const fpShapes = new Map<string, Shape>();
    for (const [k, s] of shapes) if (!isQuantTensorName(k)) fpShapes.set(k, s);
    for (const name of quantizedSiteNames(config)) {
      if (fpShapes.has(`${name}.weight`)) throw new ModelLoadError(`${where}: quantized model also stores ${name}.weight`);
    }
    // Check the FP part against the config with the quantized weights taken out.
    const fullShapes = new Map(fpShapes);
    const vd = vimDims(config);
    const sizeOf = (l: string): [number, number] => {
      const D = config.embed_dim;
      switch (l) {
        case 'in_proj': return [2 * vd.dInner, D];
        case 'out_proj': return [D, vd.dInner];
        case 'x_proj': case 'x_proj_b': return [vd.xProjOut, vd.dInner];
        default: return [vd.dInner, vd.dtRank];
      }
    };
    for (let i = 0; i < config.depth; i++) {
      for (const l of VIM_LINEARS) {
        const name = `layers.${i}.mixer.${l}`;
        const [o, n] = sizeOf(l);
        const q = readSiteQuant(tensors, name, o, n, L, quantMeta, where);
        siteQuant.set(name, q);
        fullShapes.set(`${name}.weight`, [o, n]);
        fp.set(`${name}.weight`, reconstructWeight(q, o, n));
      }
    }
    try {
      checkVimTensors(config, fullShapes, where, { allowExtra: isQuantTensorName });
    } catch (e) {
      throw new ModelLoadError((e as Error).message);
    }
  } else {
    try {
      checkVimTensors(config, shapes, where);
    } catch (e) {
      throw new ModelLoadError((e as Error).message);
    }
  }
  for (const [k, t] of tensors) {
    if (isQuantTensorName(k) && quantized) continue;
    fp.set(k, toF32(t, k, where));
  }
  const model = new VimModel(config, fp, metadata);
  if (quantMeta) {
    model.quantMetadata = quantMeta;
    for (const s of model.allLinears()) s.quant = siteQuant.get(s.name) ?? null;
  }
  return model;
}


// ---- every family (issue 10): LocalVim, VMamba v2 and LocalVMamba next to Vim

export type { BackboneModel } from './common/forward.js';
export type AnyModel = VimModel | BackboneModel;

export interface LoadAnyModelOptions extends LoadModelOptions, BackboneHints {}

/**
 * Loads a model of any supported family: a built-in name, an FP safetensors file (ours, the
 * fixtures', or a converted official checkpoint) or an official .pth. The family comes from the
 * tensor names; Vim goes through loadVimModel's path unchanged (quantized Vim files included).
 */
export async function loadAnyModel(nameOrPath: string, opts: LoadAnyModelOptions = {}): Promise<AnyModel> {
  const path = resolveModelPath(nameOrPath);
  if (/\.(pth|pt)$/i.test(path)) {
    const { readAnyPthModel } = await import('../io/pth-model.js');
    const m = await readAnyPthModel(path, opts);
    return buildAnyModel(m.tensors, m.metadata, m.key ? `${path} [${m.key}]` : path, opts);
  }
  const file = await readSafetensors(path);
  return buildAnyModel(file.tensors, file.metadata, path, opts);
}

/** Builds a model of any family from named tensors and metadata (shared by every file kind). */
export function buildAnyModel(tensors: ReadonlyMap<string, Tensor>, metadata: Record<string, string>, where: string, opts: LoadAnyModelOptions = {}): AnyModel {
  const shapes = new Map<string, Shape>([...tensors].map(([k, v]) => [k, v.shape]));
  let family: ModelFamily;
  try {
    family = modelFamily(shapes, where);
  } catch (e) {
    throw new ModelLoadError((e as Error).message);
  }
  if (family === 'vim') return buildModel(tensors, metadata, where, opts);
  const quantized = metadata.format === QUANT_FORMAT;
  if (metadata.format !== undefined && !quantized && !metadata.format.startsWith('ptq4vm-fp/')) {
    throw new ModelLoadError(`${where}: unknown __metadata__.format ${JSON.stringify(metadata.format)}`);
  }
  if (quantized) {
    if (metadata.config === undefined) throw new ModelLoadError(`${where}: quantized model without __metadata__.config`);
    const model = buildFpBackbone(family, rebuildQuantizedWeights(tensors, where), metadata, where, opts);
    attachQuantization(model, tensors, metadata, where);
    return model;
  }
  return buildFpBackbone(family, tensors, metadata, where, opts);
}

/** A LocalVim / VMamba / LocalVMamba model from FP tensors (config from the metadata, the shapes and the hints). */
function buildFpBackbone(family: Exclude<ModelFamily, 'vim'>, tensors: ReadonlyMap<string, Tensor>, metadata: Record<string, string>,
  where: string, opts: LoadAnyModelOptions): BackboneModel {
  const canonical = canonicalTensorMap(family, tensors);
  let config: BackboneConfig;
  try {
    config = backboneConfig(family, new Map([...canonical].map(([k, v]) => [k, v.shape])), where, metadata.config ?? null, opts);
  } catch (e) {
    throw new ModelLoadError((e as Error).message);
  }
  const fp = new Map<string, Tensor<'F32'>>();
  for (const [k, t] of canonical) fp.set(k, toF32(t, k, where));
  switch (config.arch) {
    case 'localvim': return new LocalVimModel(config, fp, metadata);
    case 'vmamba': return new VMambaModel(config, fp, metadata);
    case 'localvmamba': return new LocalVMambaModel(config, fp, metadata);
  }
}

/** A tensor that must exist with this dtype and rank (quantized-file validation). */
function quantTensor(tensors: ReadonlyMap<string, Tensor>, name: string, dtype: string, rank: number, where: string): Tensor {
  const t = tensors.get(name);
  if (!t) throw new ModelLoadError(`${where}: missing tensor ${name}`);
  if (t.dtype !== dtype) throw new ModelLoadError(`${where}: tensor ${name} has dtype ${t.dtype}, expected ${dtype}`);
  if (t.rank !== rank) throw new ModelLoadError(`${where}: tensor ${name} has shape ${formatShape(t.shape)}, expected rank ${rank}`);
  return t;
}

/**
 * The FP tensors of a quantized LocalVim / VMamba / LocalVMamba file, with each quantized site's
 * weight rebuilt from its levels (W ≈ qweight·wscale/σ) under its state-dict name (VMamba's
 * per-direction slices stacked back into `x_proj_weight` / `dt_projs_weight`), so the FP part
 * validates against the config like any FP file.
 */
function rebuildQuantizedWeights(tensors: ReadonlyMap<string, Tensor>, where: string): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  for (const [k, t] of tensors) if (!isQuantTensorName(k)) out.set(k, t);
  const stacked = new Map<string, Map<number, Tensor<'F32'>>>();
  for (const k of tensors.keys()) {
    if (!k.endsWith('.qweight')) continue;
    const name = k.slice(0, -'.qweight'.length);
    const qweight = quantTensor(tensors, k, 'I8', 2, where);
    const [o, i] = qweight.shape as [number, number];
    const wscale = quantTensor(tensors, `${name}.wscale`, 'F32', 1, where);
    const smooth = quantTensor(tensors, `${name}.smooth`, 'F32', 1, where);
    if (wscale.dim(0) !== o || smooth.dim(0) !== i) {
      throw new ModelLoadError(`${where}: ${name}: wscale ${formatShape(wscale.shape)} and smooth ${formatShape(smooth.shape)} do not fit qweight ${formatShape(qweight.shape)}`);
    }
    const weight = reconstructWeight({ qweight: qweight.data as Int8Array, wscale: wscale.data as Float32Array, smooth: smooth.data as Float32Array } as LinearQuant, o, i);
    const src = siteWeightSource(name);
    if (out.has(src.tensor)) throw new ModelLoadError(`${where}: quantized model also stores ${src.tensor}`);
    if (src.index === null) out.set(src.tensor, weight);
    else {
      let parts = stacked.get(src.tensor);
      if (!parts) stacked.set(src.tensor, (parts = new Map()));
      parts.set(src.index, weight);
    }
  }
  for (const [name, parts] of stacked) {
    const K = parts.size;
    const first = parts.get(0);
    for (let k = 0; k < K; k++) {
      const p = parts.get(k);
      if (!p || !first || p.dim(0) !== first.dim(0) || p.dim(1) !== first.dim(1)) {
        throw new ModelLoadError(`${where}: the quantized slices of ${name} are not directions 0..${K - 1} of one shape`);
      }
    }
    const [o, i] = first!.shape as [number, number];
    const data = new Float32Array(K * o * i);
    for (let k = 0; k < K; k++) data.set(parts.get(k)!.data, k * o * i);
    out.set(name, new Tensor('F32', [K, o, i], data));
  }
  return out;
}

/**
 * Reads every quantizable site's quantization from a quantized backbone file (period of per-token
 * parameters: the site's token count at the calibrated input size) and refuses files whose
 * quantized tensors do not match the model's quantizable sites exactly.
 */
function attachQuantization(model: BackboneModel, tensors: ReadonlyMap<string, Tensor>, metadata: Record<string, string>, where: string): void {
  let meta: QuantMetadata;
  try {
    meta = parseQuantMetadata(metadata.quant, where);
  } catch (e) {
    throw new ModelLoadError((e as Error).message);
  }
  const size = meta.input_size;
  if ((model.arch === 'vmamba' || model.arch === 'localvmamba') && !size) {
    throw new ModelLoadError(`${where}: a quantized ${FAMILY_NAMES[model.arch]} file must record quant.input_size`);
  }
  const sites = quantizableSites(model, size?.[0], size?.[1]);
  const names = new Set(sites.map((s) => s.site.name));
  for (const k of tensors.keys()) {
    if (!isQuantTensorName(k)) continue;
    const name = k.slice(0, k.lastIndexOf('.'));
    if (!names.has(name)) throw new ModelLoadError(`${where}: unexpected tensor ${k}: ${name} is not a linear PTQ4VM quantizes`);
  }
  try {
    for (const { site, tokens } of sites) site.quant = readSiteQuant(tensors, site.name, site.outFeatures, site.inFeatures, tokens, meta, where);
  } catch (e) {
    throw new ModelLoadError((e as Error).message);
  }
  model.quantMetadata = meta;
}

/** The family of a loaded model. */
export function familyOf(model: AnyModel): ModelFamily {
  return model instanceof VimModel ? 'vim' : model.arch;
}
