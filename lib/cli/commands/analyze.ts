import { join } from 'node:path';
import { analyzeModel, defaultBlocks, type CalibratedSource } from '../../analysis/analyze.js';
import { calibratedLabel, modelQuantizers } from '../../analysis/calibration-report.js';
import { writeReport } from '../../analysis/report.js';
import { resolveDataset } from '../../data/index.js';
import { loadVimModel } from '../../models/load.js';
import { VIM_LINEARS, type VimLinearName } from '../../models/vim/model.js';
import { loadCalibrationImages } from '../../quant/calib-data.js';
import { calibrate } from '../../quant/calibrate.js';
import { choiceOption, floatOption, intOption, parseOptions, requireOption, UsageError, type Command } from '../command.js';
import { progressPrinter } from './calibrate.js';

function listOption(value: string | undefined, name: string): string[] | undefined {
  if (value === undefined) return undefined;
  const items = value.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (items.length === 0) throw new UsageError(`--${name} needs at least one entry`);
  return items;
}

export const analyzeCommand: Command = {
  name: 'analyze',
  summary: 'plots of why a model is hard to quantize: token-wise variation, outlier channels, long tails, per-layer error',
  usage: `Usage: ptq4vm analyze --model M --calib DATA --out DIR [options]

For each chosen linear input of the FP model, on the calibration images: (a) per-token mean,
range and variance across the sequence with the class token marked, (b) per-channel max|x| before
and after smoothing, (c) a log-scale histogram; and per block, the output error (MSE, cosine)
of each linear under RTN per-tensor, per-token dynamic, PTS, PTS+σ and JLSS quantization. Every
PNG has its numbers beside it as JSON; DIR/index.html shows everything (no network needed).

Options:
  --model M              FP model file or built-in name (vim-fmnist)
  --calib DATA           calibration images (ImageFolder, idx file, or fmnist-train)
  --out DIR              report folder (created; files in it are overwritten)
  --layers L,L,…         linears to analyse (default: all of ${VIM_LINEARS.join(',')})
  --blocks I,I,…         blocks to analyse (default: first, middle, last)
  --calib-size N         calibration images (default 64; also those the JLSS column calibrates on)
  --wbits B, --abits B   bits of the error comparison (default 8, 8)
  --alpha A              SmoothQuant migration strength of PTS+σ (default 0.5)
  --steps N              JLSS steps per block for the JLSS column (default 100; 0 leaves JLSS out)
  --jlss-scope S         all (default) | inout
  --quantized Q          take the last column from this quantized file (made by 'ptq4vm calibrate'
                         from the same model) instead of running JLSS here
  --bins N               histogram bins (default 100)
  --seed N               seed of the image draw and searches (default 0)
  --json                 last stdout line: {"out", "index", "plots", "observations", "seconds"}`,
  async run(argv) {
    const { values } = parseOptions(argv, {
      model: { type: 'string' }, calib: { type: 'string' }, out: { type: 'string' },
      layers: { type: 'string' }, blocks: { type: 'string' }, 'calib-size': { type: 'string' },
      wbits: { type: 'string' }, abits: { type: 'string' }, alpha: { type: 'string' }, steps: { type: 'string' },
      'jlss-scope': { type: 'string' }, quantized: { type: 'string' }, bins: { type: 'string' }, seed: { type: 'string' },
      json: { type: 'boolean' },
    });
    const t0 = performance.now();
    const modelName = requireOption(values.model, 'model');
    const calibName = requireOption(values.calib, 'calib');
    const out = requireOption(values.out, 'out');
    const calibSize = intOption(values['calib-size'], 'calib-size', 64, 1, 100000);
    const wbits = intOption(values.wbits, 'wbits', 8, 2, 8);
    const abits = intOption(values.abits, 'abits', 8, 2, 8);
    const alpha = floatOption(values.alpha, 'alpha', 0.5, 0, 1);
    const steps = intOption(values.steps, 'steps', 100, 0, 100000);
    const jlssScope = choiceOption(values['jlss-scope'], 'jlss-scope', ['all', 'inout'] as const, 'all');
    const bins = intOption(values.bins, 'bins', 100, 2, 10000);
    const seed = intOption(values.seed, 'seed', 0, 0, 2 ** 31 - 1);
    const layers = (listOption(values.layers, 'layers') ?? [...VIM_LINEARS]).map((l) => choiceOption(l, 'layers', VIM_LINEARS, 'in_proj')) as VimLinearName[];

    const model = await loadVimModel(modelName);
    if (model.isQuantized) throw new UsageError(`${modelName} is a quantized model; pass the FP model as --model and the quantized file as --quantized`);
    const depth = model.layers.length;
    const blocks = (listOption(values.blocks, 'blocks') ?? defaultBlocks(depth).map(String)).map((b) => intOption(b, 'blocks', 0, 0, depth - 1));
    const dataset = await resolveDataset(calibName);
    process.stderr.write(`analyze: ${modelName}, ${calibSize} images of ${dataset.description}, blocks ${blocks.join(',')}, W${wbits}A${abits}\n`);
    const images = await loadCalibrationImages(model, dataset, calibSize, modelName, seed);

    let calibrated: CalibratedSource | null = null;
    let calibratedNote: string | undefined;
    if (values.quantized !== undefined) {
      const q = await loadVimModel(values.quantized);
      if (!q.isQuantized || !q.quantMetadata) throw new UsageError(`${values.quantized} is not a quantized model`);
      if (JSON.stringify(q.config) !== JSON.stringify(model.config)) throw new UsageError(`${values.quantized} was not made from ${modelName}: the configs differ`);
      if (q.quantMetadata.wbits !== wbits || q.quantMetadata.abits !== abits) {
        process.stderr.write(`analyze: note: ${values.quantized} is W${q.quantMetadata.wbits}A${q.quantMetadata.abits}; its column is compared with baselines at W${wbits}A${abits}\n`);
      }
      calibrated = { label: `${calibratedLabel(q.quantMetadata.method)} (${values.quantized})`, quantOf: (b, l) => q.linears(b)[l].quant };
    } else if (steps > 0) {
      process.stderr.write(`analyze: JLSS calibration (${steps} steps per block) for the JLSS column\n`);
      try {
        calibrate(model, images, { method: 'ptq4vm', wbits, abits, steps, alpha, seed, jlssScope, onProgress: progressPrinter(depth) });
        calibrated = modelQuantizers(model);
      } catch (e) {
        // The other four columns stand on their own; say loudly why the fifth is missing.
        calibratedNote = `JLSS calibration failed: ${(e as Error).message.split('\n')[0]}`;
        process.stderr.write(`analyze: warning: ${calibratedNote}; the error charts show the four other methods\n`);
        for (const s of model.allLinears()) s.quant = null;
      }
    } else {
      calibratedNote = '--steps 0';
    }

    const analysis = analyzeModel(model, images, {
      blocks, layers, wbits, abits, alpha, seed, histogramBins: bins, calibrated,
      onProgress: (m) => process.stderr.write(`analyze: ${m}\n`),
    });
    const result = await writeReport(out, analysis, {
      title: `ptq4vm analysis of ${modelName}`, model: modelName, data: `${dataset.description}`, calibratedNote,
    });
    const seconds = (performance.now() - t0) / 1000;
    for (const o of result.observations) process.stdout.write(`${o.key}: holds for ${o.holds} of ${o.of} linear inputs\n`);
    process.stdout.write(`wrote ${result.plots.length} plots and ${join(out, 'index.html')} in ${seconds.toFixed(1)} s\n`);
    if (values.json) {
      process.stdout.write(JSON.stringify({
        out, index: join(out, 'index.html'), plots: result.plots.map((p) => p.stem),
        observations: result.observations.map((o) => ({ key: o.key, holds: o.holds, of: o.of })), seconds,
      }) + '\n');
    }
    return 0;
  },
};
