import { firstStageTokens } from '../models/common/input.js';
import { InputError } from './errors.js';
import type { ModelRunner, RunnableModel } from './forward.js';

/** What `ptq4vm info`, `GET /v1/model` and `Model.info` report about a loaded model. */
export interface ModelInfo {
  arch: string;
  config: Record<string, unknown>;
  parameters: number;
  /** Tokens per image entering the first block at img_size (VMamba/LocalVMamba: the first stage's grid). */
  seqLen: number;
  classes: number;
  device: string;
  precision: string;
  quantization: Record<string, unknown> | null;
  normalize: { mean: number[]; std: number[] } | null;
  labels: string[] | null;
  /** The model file's `__metadata__` (preprocessing hints such as dataset and crop_pct live there). */
  metadata: Record<string, string>;
}

function parseJson<T>(s: string | undefined): T | null {
  if (s === undefined) return null;
  try {
    return JSON.parse(s) as T;
  } catch {
    return null;
  }
}

export function describeModel(model: RunnableModel, runner?: ModelRunner): ModelInfo {
  return {
    arch: model.config.arch,
    config: { ...model.config },
    parameters: model.parameterCount,
    seqLen: firstStageTokens(model),
    classes: model.config.num_classes,
    device: runner?.device ?? 'cpu',
    precision: runner?.precision ?? (model.isQuantized ? 'int8' : 'fp32'),
    quantization: model.quantMetadata ? { ...model.quantMetadata } : null,
    normalize: parseJson(model.metadata.normalize),
    labels: parseJson(model.metadata.labels),
    metadata: { ...model.metadata },
  };
}

/**
 * The square side images are preprocessed to: img_size, except for a quantized VMamba /
 * LocalVMamba, whose per-token parameters fix the size it was calibrated for (quant.input_size).
 * `where` names the model in the error for a non-square calibration size.
 */
export function preprocessSide(info: ModelInfo, where: string): number {
  const size = info.quantization?.input_size;
  if (!Array.isArray(size) || size.length !== 2) return info.config.img_size as number;
  const [H, W] = size as [number, number];
  if (H !== W) throw new InputError(`${where} was quantized for ${H}×${W} images; images are preprocessed to a square (calibrate with --input-size S)`);
  return H;
}
