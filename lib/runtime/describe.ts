import { firstStageTokens } from '../models/common/input.js';
import { VimModel } from '../models/vim/model.js';
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
  // Only Vim models can be quantized so far.
  const vim = model instanceof VimModel ? model : null;
  return {
    arch: model.config.arch,
    config: { ...model.config },
    parameters: model.parameterCount,
    seqLen: firstStageTokens(model),
    classes: model.config.num_classes,
    device: runner?.device ?? 'cpu',
    precision: runner?.precision ?? (vim?.isQuantized ? 'int8' : 'fp32'),
    quantization: vim?.quantMetadata ? { ...vim.quantMetadata } : null,
    normalize: parseJson(model.metadata.normalize),
    labels: parseJson(model.metadata.labels),
    metadata: { ...model.metadata },
  };
}
