import { readSafetensorsHeader } from '../../io/safetensors.js';
import { loadAnyModel, resolveModelPath, type BackboneModel } from '../../models/load.js';
import { describeBackboneConfig } from '../../models/common/family.js';
import { modelInput } from '../../models/common/input.js';
import { VimModel } from '../../models/vim/model.js';
import { describeModel } from '../../runtime/describe.js';
import { parseOptions, UsageError, type Command } from '../command.js';

export const infoCommand: Command = {
  name: 'info',
  summary: 'show a model file: config, parameter count, dtypes, quantization',
  usage: `Usage: ptq4vm info MODEL [--json]

Validates MODEL (a path or a built-in name such as vim-fmnist; any family: Vim, LocalVim,
VMamba v2, LocalVMamba; safetensors or an official .pth) and prints its config, input size,
parameter count, tensor dtypes and, for a quantized file, how it was quantized.

Options:
  --json    print one JSON object instead of text`,
  async run(argv) {
    const { values, positionals } = parseOptions(argv, { json: { type: 'boolean' } }, { positionals: 1 });
    const name = positionals[0];
    if (!name) throw new UsageError('info needs a MODEL argument');
    const path = resolveModelPath(name);
    const loaded = await loadAnyModel(name);
    if (!(loaded instanceof VimModel)) return printBackboneInfo(path, loaded, values.json === true);
    const model = loaded;
    const info = describeModel(model);
    const dtypes: Record<string, number> = {};
    let bytes = 0;
    if (!/\.(pth|pt)$/i.test(path)) {
      const header = await readSafetensorsHeader(path);
      for (const e of header.entries) {
        dtypes[e.dtype] = (dtypes[e.dtype] ?? 0) + 1;
        bytes += e.end - e.begin;
      }
    }
    if (values.json) {
      process.stdout.write(JSON.stringify({ path, ...info, dtypes, bytes }) + '\n');
      return 0;
    }
    const c = model.config;
    const lines = [
      `model:       ${path}`,
      `arch:        Vim (bimamba v2, middle class token), ${c.depth} blocks, embed ${c.embed_dim}, d_inner ${model.dims.dInner}, d_state ${c.d_state}`,
      `input:       ${c.in_chans}×${c.img_size}×${c.img_size}, patch ${c.patch_size}, stride ${c.stride} → ${model.dims.seqLen} tokens (class token at ${model.dims.clsPos})`,
      `classes:     ${c.num_classes}`,
      `parameters:  ${info.parameters.toLocaleString('en-US')}`,
    ];
    if (Object.keys(dtypes).length) lines.push(`tensors:     ${Object.entries(dtypes).map(([d, n]) => `${n}×${d}`).join(', ')} (${(bytes / 2 ** 20).toFixed(2)} MiB)`);
    const q = model.quantMetadata;
    lines.push(q
      ? `quantized:   ${q.method} W${q.wbits}A${q.abits}, activations ${q.granularity}, weights per-channel; calibrated on ${q.calib_size} images (seed ${q.seed})`
      : 'quantized:   no (floating point)');
    if (info.normalize) lines.push(`normalize:   mean ${JSON.stringify(info.normalize.mean)} std ${JSON.stringify(info.normalize.std)}`);
    process.stdout.write(lines.join('\n') + '\n');
    return 0;
  },
};

/** `ptq4vm info` for LocalVim / VMamba / LocalVMamba, FP or quantized. */
async function printBackboneInfo(path: string, model: BackboneModel, json: boolean): Promise<number> {
  const q = model.quantMetadata;
  const info = describeModel(model);
  const dtypes: Record<string, number> = {};
  let bytes = 0;
  if (!/\.(pth|pt)$/i.test(path)) {
    const header = await readSafetensorsHeader(path);
    for (const e of header.entries) {
      dtypes[e.dtype] = (dtypes[e.dtype] ?? 0) + 1;
      bytes += e.end - e.begin;
    }
  }
  if (json) {
    process.stdout.write(JSON.stringify({ path, ...info, dtypes, bytes }) + '\n');
    return 0;
  }
  const c = model.config;
  const input = modelInput(model);
  let inputLine: string;
  if ('stageGrids' in model) {
    const { H, W } = input.fixed ?? { H: c.img_size, W: c.img_size };
    const grids = model.stageGrids(H, W).map((g) => `${g.H}×${g.W}`).join(', ');
    inputLine = input.fixed
      ? `${c.in_chans}×${H}×${W} only, the size it was quantized for (stage grids ${grids})`
      : `${c.in_chans}×H×W, any size ≥ ${input.minSide} (nominal ${c.img_size}×${c.img_size}: stage grids ${grids})`;
  } else {
    inputLine = `${c.in_chans}×${c.img_size}×${c.img_size} → ${info.seqLen} tokens${model.dims.clsPos !== null ? ` (class token at ${model.dims.clsPos})` : ''}`;
  }
  const lines = [
    `model:       ${path}`,
    `arch:        ${describeBackboneConfig(c)}`,
    `input:       ${inputLine}`,
    `classes:     ${c.num_classes}`,
    `parameters:  ${info.parameters.toLocaleString('en-US')}`,
  ];
  if (Object.keys(dtypes).length) lines.push(`tensors:     ${Object.entries(dtypes).map(([d, n]) => `${n}×${d}`).join(', ')} (${(bytes / 2 ** 20).toFixed(2)} MiB)`);
  lines.push(q
    ? `quantized:   ${q.method} W${q.wbits}A${q.abits}, activations ${q.granularity}, weights per-channel; calibrated on ${q.calib_size} images (seed ${q.seed}`
      + `${q.alpha !== undefined ? `, α ${q.alpha}` : ''}${q.steps !== undefined ? `, ${q.steps} JLSS steps` : ''})`
    : 'quantized:   no (floating point)');
  if (info.normalize) lines.push(`normalize:   mean ${JSON.stringify(info.normalize.mean)} std ${JSON.stringify(info.normalize.std)}`);
  process.stdout.write(lines.join('\n') + '\n');
  return 0;
}
