/**
 * Models from PyTorch checkpoints: the state dict of an official Vim training checkpoint
 * (a dict with `model`, `model_ema`, `optimizer`, …, or a bare state dict) checked against the
 * config inferred from its shapes, and `ptq4vm convert` to our safetensors format; below, the
 * same for every family (LocalVim, VMamba v2, LocalVMamba).
 */
import { basename } from 'node:path';
import { checkVimTensors, ConfigError, inferVimConfig, vimTensorShapes, type VimConfig } from '../models/vim/config.js';
import { backboneConfig, canonicalTensorMap, describeBackboneConfig, FAMILY_NAMES, modelFamily, type BackboneConfig, type BackboneHints, type ModelFamily } from '../models/common/family.js';
import type { Shape, Tensor } from '../tensor/tensor.js';
import { quote } from './errors.js';
import { PthError, openPth, selectStateDict, type PthCheckpoint, type ReadPthOptions } from './pth.js';
import { writeSafetensors } from './safetensors.js';

/** The format string written into `__metadata__.format` of converted FP models. */
export const FP_MODEL_FORMAT = 'ptq4vm-fp/1';

export interface ReadPthModelOptions extends ReadPthOptions {
  /** Which state dict: 'model' (default), 'model_ema', …; a bare state dict is accepted too. */
  key?: string;
  /** Image size the model was trained at (not recorded in checkpoints; default 224). */
  imgSize?: number;
}

/** A Vim model read from a .pth, shaped like a safetensors file of ours (tensors + metadata). */
export interface PthModel {
  readonly path: string;
  readonly tensors: Map<string, Tensor>;
  readonly metadata: Record<string, string>;
  readonly config: VimConfig;
  readonly key: string;
}

/**
 * Reads the Vim state dict of a checkpoint: infers the config (inferVimConfig), refuses tensors a
 * Vim does not have, checks every shape (checkVimTensors), then loads the tensors (as stored:
 * F32 stays F32). The metadata is what `convertPth` writes.
 */
export async function readPthModel(path: string, opts: ReadPthModelOptions = {}): Promise<PthModel> {
  const ckpt = openPth(path, opts);
  try {
    return pthModel(ckpt, opts);
  } finally {
    ckpt.close();
  }
}

/** `readPthModel` for an already opened checkpoint (the caller closes it). */
export function pthModel(ckpt: PthCheckpoint, opts: Omit<ReadPthModelOptions, 'verifyCrc'> = {}): PthModel {
  const { key, tensors: lazy } = selectStateDict(ckpt, opts.key);
  const where = key ? `${ckpt.path} [${key}]` : ckpt.path;
  const shapes = new Map<string, Shape>();
  for (const [name, t] of lazy) shapes.set(name, t.shape);
  const config = inferVimConfig(shapes, where, { imgSize: opts.imgSize });
  const expected = vimTensorShapes(config);
  const extra = [...shapes.keys()].filter((k) => !expected.has(k));
  if (extra.length) {
    const few = extra.slice(0, 5).map((k) => quote(k, 60)).join(', ');
    throw new PthError(where, `not a Vim state dict: ${extra.length} tensor${extra.length > 1 ? 's' : ''} a Vim does not have (${few}${extra.length > 5 ? ', …' : ''})`);
  }
  checkVimTensors(config, shapes, where);
  const tensors = new Map<string, Tensor>();
  for (const [name, t] of lazy) tensors.set(name, t.load(name));
  const metadata: Record<string, string> = { format: FP_MODEL_FORMAT, config: JSON.stringify(config), source: basename(ckpt.path), key: key || '(bare state dict)' };
  return { path: ckpt.path, tensors, metadata, config, key };
}

export interface ConvertPthResult {
  config: VimConfig;
  key: string;
  tensorCount: number;
  parameterCount: number;
}

/** `ptq4vm convert`: an official Vim .pth to a safetensors file of ours, written atomically. */
export async function convertPth(inPath: string, outPath: string, opts: ReadPthModelOptions = {}): Promise<ConvertPthResult> {
  const model = await readPthModel(inPath, opts);
  await writeSafetensors(outPath, model.tensors, model.metadata);
  let parameterCount = 0;
  for (const t of model.tensors.values()) parameterCount += t.size;
  return { config: model.config, key: model.key, tensorCount: model.tensors.size, parameterCount };
}

/** For model loaders: the checked Vim tensors of a .pth, and the name to use in messages. */
export async function readPthStateDict(path: string, opts: ReadPthModelOptions = {}): Promise<PthModel & { where: string }> {
  const model = await readPthModel(path, opts);
  return { ...model, where: model.key ? `${path} [${model.key}]` : path };
}

// ---- every family (issue 10): Vim, LocalVim, VMamba v2, LocalVMamba

export interface ReadAnyPthOptions extends ReadPthModelOptions, BackboneHints {}

/** A model of any supported family read from a .pth, shaped like a safetensors file of ours. */
export interface AnyPthModel {
  readonly path: string;
  readonly tensors: Map<string, Tensor>;
  readonly metadata: Record<string, string>;
  readonly family: ModelFamily;
  readonly config: VimConfig | BackboneConfig;
  readonly key: string;
}

/**
 * `pthModel` for every family: the family comes from the tensor names; Vim takes the Vim path
 * above unchanged; the others get their config from the shapes plus hints (image size, scan
 * directions of models that are not the released ones, v-scan reverse mode), every tensor
 * checked against it. Tensors keep their dtype; VMamba's 2025 key names are mapped to the
 * classification/ ones.
 */
export function anyPthModel(ckpt: PthCheckpoint, opts: Omit<ReadAnyPthOptions, 'verifyCrc'> = {}): AnyPthModel {
  const { key, tensors: lazy } = selectStateDict(ckpt, opts.key);
  const where = key ? `${ckpt.path} [${key}]` : ckpt.path;
  const shapes = new Map<string, Shape>();
  for (const [name, t] of lazy) shapes.set(name, t.shape);
  const family = modelFamily(shapes, where);
  // Hints a family has no use for are a mistake of the caller, not something to ignore silently.
  if (opts.directions !== undefined && family !== 'localvim' && family !== 'localvmamba') {
    throw new ConfigError(`${where}: a ${FAMILY_NAMES[family]} has fixed scan directions; the directions option is for LocalVim and LocalVMamba checkpoints`);
  }
  if (opts.vReverse !== undefined && family !== 'localvim' && family !== 'localvmamba') {
    throw new ConfigError(`${where}: the v-scan reverse option is for LocalVim and LocalVMamba checkpoints, not a ${FAMILY_NAMES[family]}`);
  }
  if (family === 'vim') return { ...pthModel(ckpt, opts), family };
  const loaded = new Map<string, Tensor>();
  for (const [name, t] of lazy) loaded.set(name, t.load(name));
  const tensors = canonicalTensorMap(family, loaded);
  const config = backboneConfig(family, new Map([...tensors].map(([k, v]) => [k, v.shape])), where, null, opts);
  const metadata: Record<string, string> = {
    format: FP_MODEL_FORMAT, config: JSON.stringify(config), arch: family, source: basename(ckpt.path), key: key || '(bare state dict)',
  };
  return { path: ckpt.path, tensors, metadata, family, config, key };
}

export async function readAnyPthModel(path: string, opts: ReadAnyPthOptions = {}): Promise<AnyPthModel> {
  const ckpt = openPth(path, opts);
  try {
    return anyPthModel(ckpt, opts);
  } finally {
    ckpt.close();
  }
}

export interface ConvertAnyPthResult {
  family: ModelFamily;
  config: VimConfig | BackboneConfig;
  key: string;
  tensorCount: number;
  parameterCount: number;
  /** One line naming the architecture and its dimensions. */
  description: string;
}

/** `ptq4vm convert` for every family: an official .pth to a safetensors file of ours, written atomically. */
export async function convertAnyPth(inPath: string, outPath: string, opts: ReadAnyPthOptions = {}): Promise<ConvertAnyPthResult> {
  const model = await readAnyPthModel(inPath, opts);
  await writeSafetensors(outPath, model.tensors, model.metadata);
  let parameterCount = 0;
  for (const t of model.tensors.values()) parameterCount += t.size;
  const c = model.config;
  const description = c.arch === 'vim'
    ? `Vim, ${c.depth} blocks, embed ${c.embed_dim}, ${c.num_classes} classes, ${c.in_chans}×${c.img_size}×${c.img_size} (patch ${c.patch_size}, stride ${c.stride})`
    : describeBackboneConfig(c);
  return { family: model.family, config: c, key: model.key, tensorCount: model.tensors.size, parameterCount, description };
}
