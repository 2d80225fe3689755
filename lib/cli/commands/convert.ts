import { resolve } from 'node:path';
import { convertPth } from '../../io/pth-model.js';
import { intOption, parseOptions, UsageError, type Command } from '../command.js';

export const convertCommand: Command = {
  name: 'convert',
  summary: 'convert an official Vim PyTorch checkpoint (.pth) to safetensors, no Python needed',
  usage: `Usage: ptq4vm convert IN.pth OUT.safetensors [options]

Reads a PyTorch checkpoint (the official Vim training checkpoints: a dict with "model",
"model_ema", "optimizer", …, or a bare state dict) without executing anything in it, checks that
it is a Vim, infers its config and writes OUT atomically (complete or not at all), the config in
__metadata__. A .pth is also accepted directly wherever a model is taken (--model X.pth).

Options:
  --key K          which state dict of a training checkpoint: model (default) or model_ema
  --img-size N     the image size the model was trained at (not recorded in checkpoints; default 224)
  --json           last stdout line: {"out", "key", "config", "tensors", "parameters"}`,
  async run(argv) {
    const { values, positionals } = parseOptions(argv, {
      key: { type: 'string' }, 'img-size': { type: 'string' }, json: { type: 'boolean' },
    }, { positionals: 2 });
    const [inPath, outPath] = positionals;
    if (inPath === undefined || outPath === undefined) throw new UsageError('convert needs IN.pth and OUT.safetensors');
    if (values.key !== undefined && values.key === '') throw new UsageError('--key must not be empty');
    const imgSize = values['img-size'] === undefined ? undefined : intOption(values['img-size'], 'img-size', 224, 1, 8192);
    // Writing over the input would destroy it if the conversion failed half way through a rename.
    if (resolve(inPath) === resolve(outPath)) throw new UsageError('OUT must not be the input file');
    const r = await convertPth(inPath, outPath, { key: values.key, imgSize });
    const c = r.config;
    process.stdout.write(
      `${outPath}: Vim, ${c.depth} blocks, embed ${c.embed_dim}, ${c.num_classes} classes, ` +
      `${c.in_chans}×${c.img_size}×${c.img_size} (patch ${c.patch_size}, stride ${c.stride}); ` +
      `${r.tensorCount} tensors, ${r.parameterCount.toLocaleString('en-US')} parameters, from state dict ${r.key ? JSON.stringify(r.key) : '(bare)'}\n`,
    );
    if (values.json) {
      process.stdout.write(JSON.stringify({ out: outPath, key: r.key || null, config: c, tensors: r.tensorCount, parameters: r.parameterCount }) + '\n');
    }
    return 0;
  },
};
