import { resolveDataset } from '../../data/index.js';
import { familyOf, loadAnyModel } from '../../models/load.js';
import { FAMILY_NAMES } from '../../models/common/family.js';
import { MAX_IMAGE_SIDE, modelInput } from '../../models/common/input.js';
import { VimModel } from '../../models/vim/model.js';
import { loadCalibrationImages } from '../../quant/calib-data.js';
import { calibrate, CALIBRATION_METHODS, type CalibrationEvent } from '../../quant/calibrate.js';
import { writeQuantizedModel } from '../../quant/file.js';
import { choiceOption, floatOption, intOption, parseOptions, requireOption, UsageError, type Command } from '../command.js';
import { ProgressBar } from '../progress.js';
import { writeCalibrationReport } from '../../analysis/calibration-report.js';

export const calibrateCommand: Command = {
  name: 'calibrate',
  summary: 'quantize a model (PTQ4VM or a baseline) and write the quantized file',
  usage: `Usage: ptq4vm calibrate --model M --calib DATA --out Q.safetensors [options]

Post-training quantization, unit by unit: per-token static activation quantization, SmoothQuant
initialisation of the smoothing factors, truncation-search initial step sizes and (method
ptq4vm) JLSS, which learns the smoothing factors and step sizes jointly. The output file runs on
the INT8 kernels ('ptq4vm eval --model Q.safetensors').

Any family: Vim and LocalVim calibrate mixer by mixer, VMamba v2 and LocalVMamba block by block
(docs/backbones.md). VMamba and LocalVMamba calibrate for one input size — their per-token
parameters follow its stage grids — which the file records: the quantized model then takes
exactly that size (eval preprocesses to it).

Options:
  --model M              FP model file or built-in name (vim-fmnist); any family
  --calib DATA           calibration images (ImageFolder, idx file, or fmnist-train)
  --out Q                quantized model to write (atomically)
  --wbits B              weight bits, 2..8 (default 8)
  --abits B              activation bits, 2..8 (default 8)
  --method M             ptq4vm (default) | ptq4vm-nojlss | smoothquant | rtn
  --calib-size N         calibration images (default 256)
  --steps N              JLSS steps per unit, full batch (default 100)
  --alpha A              SmoothQuant migration strength (default 0.65 for VMamba, 0.5 otherwise)
  --jlss-scope S         all (default: every quantized linear of the unit) | inout (only in_proj
                         and out_proj, as the reference code)
  --granularity G        per-token-static | per-tensor-static | per-token-dynamic
                         (default: per-token-static for ptq4vm*, per-tensor-static for the baselines)
  --input-size S         VMamba / LocalVMamba: calibrate for S×S images (default: the model's
                         img_size); the other families take only their img_size
  --seed N               seed (default 0); the same seed gives the same file
  --device D             cpu (default)
  --report DIR           (Vim) also write the analysis plots of the calibrated model and its JLSS
                         loss curves to DIR (DIR/index.html; see 'ptq4vm analyze')
  --json                 last stdout line: the calibration report as JSON`,
  async run(argv) {
    const { values } = parseOptions(argv, {
      model: { type: 'string' }, calib: { type: 'string' }, out: { type: 'string' },
      wbits: { type: 'string' }, abits: { type: 'string' }, method: { type: 'string' },
      'calib-size': { type: 'string' }, steps: { type: 'string' }, alpha: { type: 'string' },
      'jlss-scope': { type: 'string' }, granularity: { type: 'string' }, seed: { type: 'string' },
      device: { type: 'string' }, json: { type: 'boolean' }, report: { type: 'string' }, 'input-size': { type: 'string' },
    });
    const modelName = requireOption(values.model, 'model');
    const calibName = requireOption(values.calib, 'calib');
    const out = requireOption(values.out, 'out');
    const wbits = intOption(values.wbits, 'wbits', 8, 2, 8);
    const abits = intOption(values.abits, 'abits', 8, 2, 8);
    const method = choiceOption(values.method, 'method', CALIBRATION_METHODS, 'ptq4vm');
    const calibSize = intOption(values['calib-size'], 'calib-size', 256, 1, 100000);
    const steps = intOption(values.steps, 'steps', 100, 0, 100000);
    // Unset: the family's α (calibration-plan.ts), 0.5 for Vim as before.
    const alpha = values.alpha === undefined ? undefined : floatOption(values.alpha, 'alpha', 0.5, 0, 1);
    const seed = intOption(values.seed, 'seed', 0, 0, 2 ** 31 - 1);
    const jlssScope = choiceOption(values['jlss-scope'], 'jlss-scope', ['all', 'inout'] as const, 'all');
    const granularity = values.granularity === undefined ? undefined
      : choiceOption(values.granularity, 'granularity', ['per-token-static', 'per-tensor-static', 'per-token-dynamic'] as const, 'per-token-static');
    const device = choiceOption(values.device, 'device', ['cpu', 'cuda'] as const, 'cpu');
    if (device === 'cuda') throw new UsageError('calibration on --device cuda is not available in this build; use --device cpu');

    const model = await loadAnyModel(modelName);
    if (model.isQuantized) throw new UsageError(`${modelName} is already quantized; calibrate an FP model`);
    const family = familyOf(model);
    const input = modelInput(model);
    let size = model.config.img_size;
    if (values['input-size'] !== undefined) {
      size = intOption(values['input-size'], 'input-size', size, 1, MAX_IMAGE_SIDE);
      if (!input.anySize && size !== input.size) {
        throw new UsageError(`--input-size ${size}: a ${FAMILY_NAMES[family]} model takes only its img_size, ${input.size}×${input.size}`);
      }
      if (size < input.minSide) throw new UsageError(`--input-size ${size}: this ${FAMILY_NAMES[family]} model needs images of at least ${input.minSide}×${input.minSide}`);
    }
    if (values.report !== undefined && !(model instanceof VimModel)) {
      throw new UsageError(`--report draws Vim models only; ${modelName} is a ${FAMILY_NAMES[family]} model`);
    }
    const dataset = await resolveDataset(calibName);
    process.stderr.write(`calibrate: ${FAMILY_NAMES[family]}, ${method} W${wbits}A${abits} on ${calibSize} images of ${dataset.description}`
      + `${input.anySize ? ` at ${size}×${size}` : ''}\n`);
    const images = await loadCalibrationImages(model, dataset, calibSize, modelName, seed, size);
    const report = calibrate(model, images, { method, wbits, abits, steps, alpha, seed, jlssScope, granularity, onProgress: progressPrinter() });
    await writeQuantizedModel(out, model);
    process.stderr.write(`calibrate: wrote ${out} in ${report.seconds.toFixed(1)} s\n`);
    if (values.report !== undefined && model instanceof VimModel) {
      const r = await writeCalibrationReport(values.report, model, images, report, { model: modelName, data: dataset.description, seed });
      process.stderr.write(`calibrate: report (${r.plots.length} plots) in ${values.report}/index.html\n`);
    }
    if (values.json) process.stdout.write(JSON.stringify({ out, ...report }) + '\n');
    return 0;
  },
};

/**
 * Progress on stderr: statistics pass, then one line per unit (a Vim/LocalVim mixer, a
 * VMamba/LocalVMamba block) with its loss before/after JLSS. `blocks` is only a fallback: the
 * count comes with the calibration's own events.
 */
export function progressPrinter(blocks?: number): (e: CalibrationEvent) => void {
  let bar: ProgressBar | null = null;
  let units = blocks ?? 0;
  return (e) => {
    switch (e.kind) {
      case 'stats':
        bar ??= new ProgressBar('statistics', e.total);
        bar.update(e.done);
        if (e.done >= e.total) { bar.finish(); bar = null; }
        break;
      case 'block-start':
        units = e.blocks;
        break;
      case 'jlss-step':
        bar ??= new ProgressBar(`block ${e.block + 1}/${units} JLSS`, e.steps);
        bar.update(e.step + 1, `loss ${e.loss.toExponential(3)}`);
        break;
      case 'block-done':
        bar?.finish();
        bar = null;
        process.stderr.write(`block ${e.block + 1}/${e.blocks}: loss ${e.lossBefore.toExponential(3)} → ${e.lossAfter.toExponential(3)} (${e.seconds.toFixed(1)} s)\n`);
        break;
    }
  };
}
