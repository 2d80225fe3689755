import { resolve } from 'node:path';
import { convertAnyPth } from '../../io/pth-model.js';
import { checkDirections, V_REVERSE_MODES } from '../../models/common/scan-order.js';
import { choiceOption, intOption, parseOptions, UsageError, type Command } from '../command.js';

export const convertCommand: Command = {
  name: 'convert',
  summary: 'convert an official PyTorch checkpoint (.pth: Vim, LocalVim, VMamba v2, LocalVMamba) to safetensors, no Python needed',
  usage: `Usage: ptq4vm convert IN.pth OUT.safetensors [options]

Reads a PyTorch checkpoint (an official training checkpoint: a dict with "model", "model_ema",
"optimizer", …, or a bare state dict) without executing anything in it, tells its family from the
tensor names (Vim, LocalVim, VMamba v2, LocalVMamba), infers its config, checks every tensor
against it and writes OUT atomically (complete or not at all), the config in __metadata__. A .pth
is also accepted directly wherever a model is taken (--model X.pth).

Options:
  --key K             which state dict of a training checkpoint: model (default) or model_ema
  --img-size N        the image size the model was trained at (not recorded in checkpoints; default
                      224; for LocalVim it must fit pos_embed, for VMamba/LocalVMamba it is the
                      nominal size: they take any input size)
  --directions JSON   LocalVim / LocalVMamba: the scan directions of each layer (LocalVim) or block
                      (LocalVMamba), which checkpoints do not record, e.g.
                      '[["h","v_flip","w7","w7_flip"],["h_flip","w2_flip","w7","w7_flip"]]'
                      (a layer may also be one string: "h v_flip w7 w7_flip"); built in for the
                      released local_vim_tiny(_middle_cls_token), local_vssm_tiny and local_vssm_small
  --v-reverse MODE    LocalVim / LocalVMamba: how vertical-scan outputs go back onto a non-square grid:
                      inverse (default, correct on every grid) or official (reproduces the official
                      code, which is right only on square grids); see docs/backbones.md
  --json              last stdout line: {"out", "key", "family", "config", "tensors", "parameters"}`,
  async run(argv) {
    const { values, positionals } = parseOptions(argv, {
      key: { type: 'string' }, 'img-size': { type: 'string' }, directions: { type: 'string' }, 'v-reverse': { type: 'string' },
      json: { type: 'boolean' },
    }, { positionals: 2 });
    const [inPath, outPath] = positionals;
    if (inPath === undefined || outPath === undefined) throw new UsageError('convert needs IN.pth and OUT.safetensors');
    if (values.key !== undefined && values.key === '') throw new UsageError('--key must not be empty');
    const imgSize = values['img-size'] === undefined ? undefined : intOption(values['img-size'], 'img-size', 224, 1, 8192);
    const directions = values.directions === undefined ? undefined : parseDirections(values.directions);
    const vReverse = values['v-reverse'] === undefined ? undefined : choiceOption(values['v-reverse'], 'v-reverse', V_REVERSE_MODES, 'inverse');
    // Writing over the input would destroy it if the conversion failed half way through a rename.
    if (resolve(inPath) === resolve(outPath)) throw new UsageError('OUT must not be the input file');
    const r = await convertAnyPth(inPath, outPath, { key: values.key, imgSize, directions, vReverse });
    process.stdout.write(
      `${outPath}: ${r.description}; ` +
      `${r.tensorCount} tensors, ${r.parameterCount.toLocaleString('en-US')} parameters, from state dict ${r.key ? JSON.stringify(r.key) : '(bare)'}\n`,
    );
    if (values.json) {
      process.stdout.write(JSON.stringify({
        out: outPath, key: r.key || null, family: r.family, config: r.config, tensors: r.tensorCount, parameters: r.parameterCount,
      }) + '\n');
    }
    return 0;
  },
};

/** `--directions`: a JSON list with, per layer/block, a list of direction names or one space-separated string of them. */
function parseDirections(text: string): string[][] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new UsageError(`--directions must be JSON, e.g. '[["h","v_flip","w7","w7_flip"]]', got ${JSON.stringify(text.slice(0, 80))}`);
  }
  if (!Array.isArray(parsed) || parsed.length === 0) throw new UsageError('--directions must be a non-empty JSON list with the directions of each layer');
  return parsed.map((layer: unknown, i) => {
    const names = typeof layer === 'string' ? layer.split(/\s+/).filter(Boolean) : layer;
    try {
      return checkDirections(names, `--directions[${i}]`);
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
  });
}
