import { preprocessFromModel, resolveDataset } from '../../data/index.js';
import { writeFileAtomic, writeAll } from '../../io/atomic.js';
import { preprocessSide } from '../../runtime/describe.js';
import { InferenceEngine } from '../../runtime/engine.js';
import { evaluateDataset } from '../../runtime/evaluate.js';
import { choiceOption, intOption, parseOptions, requireOption, type Command } from '../command.js';
import { ProgressBar } from '../progress.js';

export const evalCommand: Command = {
  name: 'eval',
  summary: 'top-1/top-5 accuracy of a model on a data set',
  usage: `Usage: ptq4vm eval --model M --data D [options]

Evaluates M on D (an ImageFolder directory, an MNIST idx file, or a built-in name: fmnist,
fmnist-train). A quantized model runs on the real INT8 kernels unless --precision says otherwise.
Images are preprocessed as the model's file says (size = its img_size, resize, mean/std); a
quantized VMamba / LocalVMamba is fed the size it was calibrated for. Every family runs on the
CPU in fp32 and, once quantized, int8 or fake-quant; Vim also on CUDA.

Options:
  --model M            model file or built-in name (vim-fmnist)
  --data D             data set
  --limit N            only the first N images
  --batch B            images per forward (default 64)
  --device D           cpu (default)
  --precision P        fp32 | int8 | fake-quant (default: int8 for a quantized model, else fp32)
  --fake-quant         same as --precision fake-quant (the simulation of a quantized model)
  --strict             a corrupt image is an error instead of being skipped and counted
  --save-preds FILE    write {"pred": [class per image]} (−1 for skipped images)
  --json               last stdout line: {"top1", "top5", "n", "device", "precision", "images_per_s"}`,
  async run(argv) {
    const { values } = parseOptions(argv, {
      model: { type: 'string' }, data: { type: 'string' }, limit: { type: 'string' }, batch: { type: 'string' },
      device: { type: 'string' }, precision: { type: 'string' }, 'fake-quant': { type: 'boolean' },
      strict: { type: 'boolean' }, 'save-preds': { type: 'string' }, json: { type: 'boolean' },
    });
    const modelName = requireOption(values.model, 'model');
    const dataName = requireOption(values.data, 'data');
    const batchSize = intOption(values.batch, 'batch', 64, 1, 4096);
    const limit = values.limit === undefined ? undefined : intOption(values.limit, 'limit', 0, 1);
    const device = choiceOption(values.device, 'device', ['cpu', 'cuda'] as const, 'cpu');
    let precision = values.precision === undefined ? undefined : choiceOption(values.precision, 'precision', ['fp32', 'fp16', 'int8', 'fake-quant'] as const, 'fp32');
    if (values['fake-quant']) precision = 'fake-quant';
    const dataset = await resolveDataset(dataName);
    const engine = await InferenceEngine.start({ model: modelName, device, precision });
    try {
      const info = engine.info;
      const preprocess = preprocessFromModel(
        { in_chans: info.config.in_chans as number, img_size: preprocessSide(info, modelName) },
        info.metadata,
        modelName,
      );
      const total = Math.min(dataset.length, limit ?? dataset.length);
      const bar = new ProgressBar(`eval ${info.precision}`, total);
      const result = await evaluateDataset(async (images) => (await engine.forward(images)).logits, dataset, {
        preprocess, batchSize, limit, strict: values.strict ?? false,
        onBatch: (done, all, top1) => bar.update(done, `top1 ${(top1 * 100).toFixed(2)}%`),
      });
      bar.finish();
      if (values['save-preds']) {
        const body = new TextEncoder().encode(JSON.stringify({ pred: Array.from(result.preds) }) + '\n');
        await writeFileAtomic(values['save-preds'], (fh) => writeAll(fh, body));
      }
      const summary = {
        top1: result.top1, top5: result.top5, n: result.n, device: info.device, precision: info.precision,
        images_per_s: Number(result.imagesPerSecond.toFixed(2)),
      };
      process.stdout.write(
        `${dataset.description}\n` +
        `model ${modelName} (${info.precision} on ${info.device}): top-1 ${(result.top1 * 100).toFixed(2)}%  top-5 ${(result.top5 * 100).toFixed(2)}%  ` +
        `on ${result.n} images${result.skipped ? ` (${result.skipped} skipped)` : ''}, ${result.imagesPerSecond.toFixed(1)} images/s\n`,
      );
      if (values.json) process.stdout.write(JSON.stringify(summary) + '\n');
    } finally {
      await engine.dispose();
    }
    return 0;
  },
};
