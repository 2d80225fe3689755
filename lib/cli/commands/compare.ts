import { preprocessFromModel, resolveDataset } from '../../data/index.js';
import { loadVimModel } from '../../models/load.js';
import type { VimModel } from '../../models/vim/model.js';
import { loadCalibrationImages } from '../../quant/calib-data.js';
import { calibrate, CALIBRATION_METHODS, type CalibrationMethod } from '../../quant/calibrate.js';
import { ModelRunner, type Precision } from '../../runtime/forward.js';
import { topK } from '../../runtime/evaluate.js';
import { Tensor } from '../../tensor/tensor.js';
import { choiceOption, intOption, parseOptions, UsageError, type Command } from '../command.js';
import { ProgressBar } from '../progress.js';
import { progressPrinter } from './calibrate.js';

const BIT_CONFIGS: readonly [number, number][] = [[8, 8], [6, 6], [4, 8], [4, 4]];

interface LabelledImages {
  images: Tensor<'F32'>;
  labels: Int32Array;
}

async function loadAll(model: VimModel, name: string, limit: number | undefined): Promise<LabelledImages> {
  const dataset = await resolveDataset(name);
  const c = model.config;
  const preprocess = preprocessFromModel({ in_chans: c.in_chans, img_size: c.img_size }, { ...model.metadata }, name);
  const n = Math.min(dataset.length, limit ?? dataset.length);
  const per = c.in_chans * c.img_size * c.img_size;
  const data = new Float32Array(n * per);
  const labels = new Int32Array(n);
  let k = 0;
  for await (const b of dataset.batches({ preprocess, batchSize: 256, limit: n })) {
    const m = b.images.dim(0);
    data.set(b.images.data.subarray(0, m * per), k * per);
    labels.set(b.labels.subarray(0, m), k);
    k += m;
  }
  return { images: new Tensor('F32', [k, c.in_chans, c.img_size, c.img_size], data.subarray(0, k * per)), labels: labels.subarray(0, k) };
}

/** Top-1 of `model` at `precision` on in-memory images (synchronous: this command is a batch job). */
function accuracy(model: VimModel, precision: Precision, test: LabelledImages, label: string, batch = 250): number {
  const runner = new ModelRunner(model, { precision });
  const N = test.images.dim(0);
  const per = test.images.size / N;
  const bar = new ProgressBar(label, N);
  let correct = 0;
  for (let s = 0; s < N; s += batch) {
    const n = Math.min(batch, N - s);
    const logits = runner.forward(new Tensor('F32', [n, ...test.images.shape.slice(1)], test.images.data.subarray(s * per, (s + n) * per)));
    const cols = logits.dim(1);
    for (let i = 0; i < n; i++) if (topK(logits.data, cols, i, 1)[0] === test.labels[s + i]) correct++;
    bar.update(s + n);
  }
  bar.finish();
  return correct / N;
}

export const compareCommand: Command = {
  name: 'compare',
  summary: 'quantize with every method at W8A8/W6A6/W4A8/W4A4 and compare accuracy (npm run calibrate)',
  usage: `Usage: ptq4vm compare [options]

The embedded default end to end (what 'npm run calibrate' runs): FP32 accuracy, then RTN,
SmoothQuant, PTQ4VM without JLSS and PTQ4VM, each at W8A8, W6A6, W4A8 and W4A4, every quantized
accuracy measured through the real INT8 kernels, printed as a table with times.

Options:
  --model M          FP model (default vim-fmnist)
  --calib DATA       calibration data (default fmnist-train)
  --data DATA        test data (default fmnist)
  --calib-size N     calibration images (default 256)
  --steps N          JLSS steps per block (default 100)
  --limit N          only the first N test images
  --methods LIST     comma-separated subset of ${CALIBRATION_METHODS.join(',')}
  --bits LIST        comma-separated subset of W8A8,W6A6,W4A8,W4A4
  --precision P      int8 (default) | fake-quant: how quantized accuracy is measured
  --json             last stdout line: {"fp32": top1, "results": [{"method", "wbits", "abits", "top1", "seconds"}, …]}`,
  async run(argv) {
    const { values } = parseOptions(argv, {
      model: { type: 'string' }, calib: { type: 'string' }, data: { type: 'string' }, 'calib-size': { type: 'string' },
      steps: { type: 'string' }, limit: { type: 'string' }, methods: { type: 'string' }, bits: { type: 'string' },
      precision: { type: 'string' }, json: { type: 'boolean' },
    });
    const modelName = values.model ?? 'vim-fmnist';
    const calibSize = intOption(values['calib-size'], 'calib-size', 256, 1, 100000);
    const steps = intOption(values.steps, 'steps', 100, 0, 100000);
    const limit = values.limit === undefined ? undefined : intOption(values.limit, 'limit', 0, 1);
    const precision = choiceOption(values.precision, 'precision', ['int8', 'fake-quant'] as const, 'int8');
    const methods = (values.methods?.split(',') ?? [...CALIBRATION_METHODS].reverse()).map((m) => choiceOption(m.trim(), 'methods', CALIBRATION_METHODS, 'ptq4vm'));
    const bits = values.bits === undefined ? BIT_CONFIGS : values.bits.split(',').map((b) => {
      const m = /^W(\d)A(\d)$/i.exec(b.trim());
      if (!m) throw new UsageError(`--bits entries look like W8A8, got ${JSON.stringify(b)}`);
      return [Number(m[1]), Number(m[2])] as [number, number];
    });

    const model = await loadVimModel(modelName);
    if (model.isQuantized) throw new UsageError(`${modelName} is already quantized; compare needs an FP model`);
    const calibSet = await resolveDataset(values.calib ?? 'fmnist-train');
    const calibImages = await loadCalibrationImages(model, calibSet, calibSize, modelName, 0);
    const test = await loadAll(model, values.data ?? 'fmnist', limit);
    const t0 = performance.now();
    const fp32 = accuracy(model, 'fp32', test, 'eval fp32');
    const fpSeconds = (performance.now() - t0) / 1000;
    process.stderr.write(`FP32 top-1 ${(fp32 * 100).toFixed(2)}% on ${test.images.dim(0)} images (${fpSeconds.toFixed(1)} s)\n`);
    const results: { method: CalibrationMethod; wbits: number; abits: number; top1: number; seconds: number; eval_seconds: number }[] = [];
    for (const [wbits, abits] of bits) {
      for (const method of methods) {
        process.stderr.write(`--- ${method} W${wbits}A${abits}\n`);
        const tc = performance.now();
        calibrate(model, calibImages, { method, wbits, abits, steps, onProgress: progressPrinter(model.layers.length) });
        const seconds = (performance.now() - tc) / 1000;
        const te = performance.now();
        const top1 = accuracy(model, precision, test, `eval ${method} W${wbits}A${abits}`);
        results.push({ method, wbits, abits, top1, seconds: round(seconds), eval_seconds: round((performance.now() - te) / 1000) });
        process.stderr.write(`${method} W${wbits}A${abits}: top-1 ${(top1 * 100).toFixed(2)}% (calibration ${seconds.toFixed(1)} s)\n`);
      }
    }
    for (const s of model.allLinears()) s.quant = null;
    const rows = [
      ['method', 'bits', 'top-1', 'Δ vs FP32', 'calibration s', 'eval s'],
      ['fp32', 'W32A32', pct(fp32), '', '', fpSeconds.toFixed(1)],
      ...results.map((r) => [r.method, `W${r.wbits}A${r.abits}`, pct(r.top1), ((r.top1 - fp32) * 100).toFixed(2), r.seconds.toFixed(1), r.eval_seconds.toFixed(1)]),
    ];
    const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
    process.stdout.write(`${modelName}: ${test.images.dim(0)} test images, ${calibSize} calibration images, quantized accuracy via ${precision === 'int8' ? 'the INT8 kernels' : 'simulation'}\n`);
    for (const r of rows) process.stdout.write(r.map((c, i) => c.padEnd(widths[i]!)).join('  ') + '\n');
    process.stdout.write(`total ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
    if (values.json) process.stdout.write(JSON.stringify({ fp32, n: test.images.dim(0), precision, results }) + '\n');
    return 0;
  },
};

function pct(x: number): string {
  return (x * 100).toFixed(2) + '%';
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}
