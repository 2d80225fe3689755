import { VIM_LINEARS, type VimLinearName, type VimModel } from '../models/vim/model.js';
import type { CalibrationReport } from '../quant/calibrate.js';
import type { QuantMetadata } from '../quant/file.js';
import type { Tensor } from '../tensor/tensor.js';
import { analyzeModel, defaultBlocks, type CalibratedSource } from './analyze.js';
import { writeReport, type ReportResult } from './report.js';

/** The error chart's label for a calibrated model's quantizers. */
export function calibratedLabel(method: QuantMetadata['method']): string {
  return { ptq4vm: 'JLSS', 'ptq4vm-nojlss': 'PTQ4VM (no JLSS)', smoothquant: 'SmoothQuant', rtn: 'RTN' }[method];
}

/** The quantizers a (calibrated or loaded) quantized model carries, as the error chart's last column. */
export function modelQuantizers(model: VimModel): CalibratedSource | null {
  const meta = model.quantMetadata;
  if (!meta || !model.isQuantized) return null;
  return { label: calibratedLabel(meta.method), quantOf: (block, linear) => model.linears(block)[linear].quant };
}

export interface CalibrationReportOptions {
  model: string;
  data: string;
  blocks?: readonly number[];
  layers?: readonly VimLinearName[];
  seed?: number;
  onProgress?: (message: string) => void;
}

/**
 * `calibrate --report DIR`: the analysis plots of the model just calibrated (its FP inputs, its
 * σ next to SmoothQuant's, its quantizers' error next to the baselines') plus the loss of every
 * block before/after JLSS and each block's JLSS loss curve.
 */
export async function writeCalibrationReport(dir: string, model: VimModel, images: Tensor<'F32'>, report: CalibrationReport, opts: CalibrationReportOptions): Promise<ReportResult> {
  const meta = report.metadata;
  const calibrated = modelQuantizers(model);
  const analysis = analyzeModel(model, images, {
    blocks: opts.blocks ?? defaultBlocks(model.layers.length),
    layers: opts.layers ?? VIM_LINEARS,
    wbits: meta.wbits, abits: meta.abits, alpha: meta.alpha ?? 0.5, seed: opts.seed ?? meta.seed,
    calibrated, onProgress: opts.onProgress,
  });
  return writeReport(dir, analysis, {
    title: `ptq4vm calibration report: ${meta.method} W${meta.wbits}A${meta.abits} of ${opts.model}`,
    model: opts.model, data: opts.data,
    calibration: { method: meta.method, blocks: report.blocks },
    calibratedNote: calibrated ? undefined : 'the model carries no quantizers',
  });
}
