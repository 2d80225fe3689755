import { readSafetensors, writeSafetensors } from '../../io/safetensors.js';
import { InferenceEngine } from '../../runtime/engine.js';
import { InputError } from '../../runtime/errors.js';
import { choiceOption, parseOptions, requireOption, type Command } from '../command.js';
import { Tensor } from '../../tensor/tensor.js';

export const inferCommand: Command = {
  name: 'infer',
  summary: 'run a model on a tensor of images, write the logits',
  usage: `Usage: ptq4vm infer --model M --input IN.safetensors --out OUT.safetensors [options]

Reads tensor "input" [B, C, H, W] (already normalized) from IN and writes tensor "logits"
[B, classes] to OUT (written atomically: OUT appears complete or not at all). H×W must be the
model's img_size for Vim and LocalVim; VMamba and LocalVMamba take any size in fp32, and once
quantized exactly the size they were calibrated for ('ptq4vm info' shows it). Every family runs
on the CPU in fp32 and, once quantized, int8 or fake-quant; Vim also on CUDA.

Options:
  --model M         model file or built-in name (vim-fmnist)
  --input IN        safetensors file holding "input"
  --out OUT         safetensors file to write
  --device D        cpu (default)
  --precision P     fp32 | int8 | fake-quant (default: int8 for a quantized model, else fp32)`,
  async run(argv) {
    const { values } = parseOptions(argv, {
      model: { type: 'string' }, input: { type: 'string' }, out: { type: 'string' },
      device: { type: 'string' }, precision: { type: 'string' },
    });
    const model = requireOption(values.model, 'model');
    const inputPath = requireOption(values.input, 'input');
    const outPath = requireOption(values.out, 'out');
    const device = choiceOption(values.device, 'device', ['cpu', 'cuda'] as const, 'cpu');
    const precision = values.precision === undefined ? undefined : choiceOption(values.precision, 'precision', ['fp32', 'fp16', 'int8', 'fake-quant'] as const, 'fp32');
    const file = await readSafetensors(inputPath);
    const input = file.tensors.get('input');
    if (!input) throw new InputError(`${inputPath}: no tensor named "input"`);
    const engine = await InferenceEngine.start({ model, device, precision });
    try {
      const { logits } = await engine.forward(asF32(input, inputPath));
      await writeSafetensors(outPath, new Map([['logits', logits]]), { model, precision: engine.info.precision });
    } finally {
      await engine.dispose();
    }
    return 0;
  },
};

function asF32(t: Tensor, where: string): Tensor<'F32'> {
  if (t.dtype !== 'F32' && t.dtype !== 'F16' && t.dtype !== 'BF16' && t.dtype !== 'F64') {
    throw new InputError(`${where}: "input" has dtype ${t.dtype}, expected a float type`);
  }
  return t.toFloat32();
}
