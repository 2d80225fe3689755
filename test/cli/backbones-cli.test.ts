/**
 * LocalVim, VMamba v2 and LocalVMamba through the CLI: `infer` on every backbone fixture against
 * the official code's reference logits, `info` on each family, `eval` on an image folder (the
 * preprocessing each model's config asks for, checked against an independent transcription),
 * calibrate → info / eval / infer on a quantized VMamba, and clear errors for what these families
 * cannot do yet (CUDA, fp16) or do not take.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import sharp from 'sharp';
import { readSafetensors, readSafetensorsHeader, writeSafetensors } from '../../lib/io/safetensors.js';
import { backboneForward, type BackboneModel } from '../../lib/models/common/forward.js';
import { loadModel } from '../../lib/api.js';
import { loadAnyModel } from '../../lib/models/load.js';
import { VimModel } from '../../lib/models/vim/model.js';
import { preprocessFromModel, resolveDataset } from '../../lib/data/index.js';
import { CpuExecutor } from '../../lib/runtime/cpu-executor.js';
import { describeModel } from '../../lib/runtime/describe.js';
import { ModelRunner } from '../../lib/runtime/forward.js';
import { Tensor } from '../../lib/tensor/tensor.js';
import { fixture, NO_FIXTURES } from '../helpers.js';
import { lastJson, runCli } from './run-cli.js';

const dir = mkdtempSync(join(tmpdir(), 'ptq4vm-backbones-cli-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const FIXTURES = [
  'local_vim_small', 'local_vim_small_112pad', 'local_vim_small_midcls_112pad',
  'vmamba_v2v_small', 'vmamba_v2v_small_ds4', 'local_vssm_small',
] as const;

function maxRelative(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let d = 0;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i]! - b[i]!));
    m = Math.max(m, Math.abs(b[i]!));
  }
  return d / m;
}

async function loadBackbone(path: string): Promise<BackboneModel> {
  const m = await loadAnyModel(path);
  assert.ok(!(m instanceof VimModel));
  return m;
}

/** Logits computed in this process straight through the graph (no runner, no worker). */
function directLogits(model: BackboneModel, images: Tensor<'F32'>): Float32Array {
  const ops = new CpuExecutor({ quantMode: 'off' });
  try {
    return ops.toHost(backboneForward(ops, model, images)).slice();
  } finally {
    ops.endForward();
  }
}

for (const name of FIXTURES) {
  test(`infer: ${name} on its reference input → the official logits within 1e-5 × max|ref|`, async (t) => {
    const model = fixture(`backbones/${name}.safetensors`);
    const ref = fixture(`backbones/${name}.ref.safetensors`);
    if (!model || !ref) return t.skip(NO_FIXTURES);
    const out = join(dir, `${name}.logits.safetensors`);
    const r = await runCli(['infer', '--model', model, '--input', ref, '--out', out]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    const written = await readSafetensors(out);
    assert.equal(written.metadata.precision, 'fp32');
    const got = written.tensors.get('logits')!.toFloat32();
    const want = (await readSafetensors(ref)).tensors.get('logits')!.toFloat32();
    assert.deepEqual(got.shape, want.shape);
    const err = maxRelative(got.data, want.data);
    assert.ok(err < 1e-5, `max|Δ|/max|ref| = ${err}`);
  });
}

test('info on each family: text and JSON (arch, input, first-stage tokens, parameters as the file holds them)', async (t) => {
  const cases = [
    { name: 'local_vim_small', arch: 'localvim', seqLen: 14 * 14, text: /arch: +LocalVim, RoPE, 4 layers, embed 96.*\ninput: +3×224×224 → 196 tokens\n/ },
    { name: 'local_vim_small_midcls_112pad', arch: 'localvim', seqLen: 7 * 7 + 1, text: /LocalVim \(middle class token\), 2 layers.*\ninput: +3×112×112 → 50 tokens \(class token at 24\)\n/ },
    { name: 'vmamba_v2v_small', arch: 'vmamba', seqLen: 56 * 56, text: /VMamba v2 \(v05_noz\), dims 32\/64\/128\/256.*\ninput: +3×H×W, any size ≥ 1 \(nominal 224×224: stage grids 56×56, 28×28, 14×14, 7×7\)\n/ },
    { name: 'local_vssm_small', arch: 'localvmamba', seqLen: 56 * 56, text: /LocalVMamba, dims 24\/48\/96\/192.*\ninput: +3×H×W, any size ≥ 4 \(nominal 224×224: stage grids 56×56, 28×28, 14×14, 7×7\)\n/ },
  ];
  if (!fixture('backbones/local_vim_small.safetensors')) return t.skip(NO_FIXTURES);
  for (const c of cases) {
    const path = fixture(`backbones/${c.name}.safetensors`)!;
    const header = await readSafetensorsHeader(path);
    // Parameters: every stored tensor except LocalVim's RoPE tables (buffers), counted from the header alone.
    let params = 0;
    for (const e of header.entries) if (!e.name.startsWith('rope.')) params += e.shape.reduce((a, b) => a * b, 1);
    const j = await runCli(['info', path, '--json']);
    assert.equal(j.code, 0, j.stderr);
    const info = lastJson<{ arch: string; seqLen: number; parameters: number; classes: number; precision: string; quantization: unknown; dtypes: Record<string, number>; config: { in_chans: number } }>(j.stdout);
    assert.equal(info.arch, c.arch, c.name);
    assert.equal(info.seqLen, c.seqLen, c.name);
    assert.equal(info.parameters, params, c.name);
    assert.equal(info.classes, 10);
    assert.equal(info.precision, 'fp32');
    assert.equal(info.quantization, null);
    assert.equal(info.config.in_chans, 3);
    assert.equal(info.dtypes.F32, header.entries.length);
    const text = await runCli(['info', path]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, c.text, c.name);
    assert.match(text.stdout, new RegExp(`parameters: +${params.toLocaleString('en-US')}\n`));
  }
});

test('VMamba and LocalVMamba take any input size through the runtime; LocalVim only its own', async (t) => {
  const vm = fixture('backbones/vmamba_v2v_small_ds4.safetensors');
  const lvm = fixture('backbones/local_vssm_small.safetensors');
  const lv = fixture('backbones/local_vim_small_112pad.safetensors');
  if (!vm || !lvm || !lv) return t.skip(NO_FIXTURES);
  const images = (B: number, H: number, W: number, seed: number): Tensor<'F32'> =>
    Tensor.f32([B, 3, H, W], Float32Array.from({ length: B * 3 * H * W }, (_, i) => Math.sin(i * 0.731 + seed) * 1.7));
  for (const [path, H, W] of [[vm, 37, 23], [lvm, 30, 45], [lvm, 4, 4]] as const) {
    const x = images(2, H, W, H);
    const input = join(dir, `in-${H}x${W}.safetensors`);
    await writeSafetensors(input, new Map([['input', x]]));
    const out = join(dir, `out-${H}x${W}.safetensors`);
    const r = await runCli(['infer', '--model', path, '--input', input, '--out', out]);
    assert.equal(r.code, 0, r.stderr);
    const got = (await readSafetensors(out)).tensors.get('logits')!.toFloat32();
    assert.deepEqual(got.shape, [2, 10]);
    assert.deepEqual(got.data, directLogits(await loadBackbone(path), x), `${H}×${W}: the worker's logits are the graph's`);
  }
  const refuse = async (path: string, shape: number[], message: RegExp): Promise<void> => {
    const input = join(dir, `bad-${shape.join('x')}.safetensors`);
    await writeSafetensors(input, new Map([['input', images(shape[0]!, shape[2]!, shape[3]!, 1).reshape(shape)]]));
    const r = await runCli(['infer', '--model', path, '--input', input, '--out', join(dir, 'never.safetensors')]);
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, message);
  };
  await refuse(lv, [1, 3, 112, 96], /^ptq4vm: input has shape \[1, 3, 112, 96\], the model takes \[B, 3, 112, 112\]/);
  await refuse(lvm, [1, 3, 3, 40], /the model takes \[B, 3, H, W\] with 4 ≤ H, W ≤ 8192/);
  await refuse(vm, [1, 3, 1, 8193], /the model takes \[B, 3, H, W\] with 1 ≤ H, W ≤ 8192/);
});

test('INT8 and fake-quant on an FP model, fp16 and CUDA are refused for these families with a clear message', async (t) => {
  const model = fixture('backbones/local_vim_small_112pad.safetensors');
  const ref = fixture('backbones/local_vim_small_112pad.ref.safetensors');
  if (!model || !ref) return t.skip(NO_FIXTURES);
  for (const [args, message] of [
    [['--precision', 'int8'], /precision int8 needs a quantized model \(run 'ptq4vm calibrate' first\)/],
    [['--precision', 'fake-quant'], /precision fake-quant needs a quantized model/],
    [['--precision', 'fp16', '--device', 'cuda'], /precision fp16 is not available for LocalVim models yet/],
    [['--device', 'cuda'], /LocalVim models run on --device cpu only for now/],
  ] as const) {
    const r = await runCli(['infer', '--model', model, '--input', ref, '--out', join(dir, 'never.safetensors'), ...args]);
    assert.equal(r.code, 1, `${args.join(' ')}: ${r.stderr}`);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, message);
  }
  // What calibrate cannot do for these families is a usage error naming the family.
  for (const [args, message] of [
    [['--input-size', '96'], /^ptq4vm: --input-size 96: a LocalVim model takes only its img_size, 112×112\n$/],
    [['--report', join(dir, 'never-report')], /^ptq4vm: --report draws Vim models only; .*local_vim_small_112pad\.safetensors is a LocalVim model\n$/],
  ] as const) {
    const c = await runCli(['calibrate', '--model', model, '--calib', 'fmnist-train', '--out', join(dir, 'never-calibrated.safetensors'), ...args]);
    assert.equal(c.code, 2, c.stderr);
    assert.match(c.stderr, message);
  }
  const m = await loadBackbone(model);
  assert.throws(() => new ModelRunner(m, { precision: 'int8' }), { name: 'InputError' });
  const runner = new ModelRunner(m);
  assert.equal(runner.precision, 'fp32');
  assert.equal(runner.device, 'cpu');
});

// ---- eval on an image folder

/** A smooth RGB pattern with some noise, different per image (values 0..255). */
function pattern(side: number, seed: number): Uint8Array {
  const px = new Uint8Array(side * side * 3);
  let s = seed * 2654435761 >>> 0;
  for (let y = 0; y < side; y++) {
    for (let x = 0; x < side; x++) {
      for (let c = 0; c < 3; c++) {
        s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
        const v = 128 + 90 * Math.sin((x * (c + 1) + y * (seed % 5 + 1)) / (9 + seed)) + ((s >>> 24) % 41) - 20;
        px[(y * side + x) * 3 + c] = Math.max(0, Math.min(255, Math.round(v)));
      }
    }
  }
  return px;
}

/**
 * The model input of a side×side RGB image that needs no resize (side = resize): the centre
 * crop, each channel (v/255 − mean)/std in float32 as torchvision computes it.
 */
function expectedInput(px: Uint8Array, side: number, size: number): Float32Array {
  const mean = [0.485, 0.456, 0.406];
  const std = [0.229, 0.224, 0.225];
  const off = Math.round((side - size) / 2);
  const out = new Float32Array(3 * size * size);
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        const v = Math.fround(px[((y + off) * side + x + off) * 3 + c]! / 255);
        out[(c * size + y) * size + x] = Math.fround(Math.fround(v - Math.fround(mean[c]!)) / Math.fround(std[c]!));
      }
    }
  }
  return out;
}

for (const { name, size, resize } of [
  { name: 'local_vim_small_112pad', size: 112, resize: 128 }, // img_size 112 (from its config); 112/0.875 = 128
  { name: 'vmamba_v2v_small_ds4', size: 224, resize: 256 }, // nominal 224 (config imgsize); 224/0.875 = 256
]) {
  test(`eval: ${name} on an image folder, preprocessed as its config says (${resize} → crop ${size}, ImageNet mean/std)`, async (t) => {
    const modelPath = fixture(`backbones/${name}.safetensors`);
    if (!modelPath) return t.skip(NO_FIXTURES);
    const root = join(dir, `folder-${name}`);
    const classes = ['ant', 'bee', 'cat'];
    const files: { label: number; px: Uint8Array }[] = [];
    for (let k = 0; k < 7; k++) {
      const label = k % classes.length;
      const px = pattern(resize, k + 1);
      mkdirSync(join(root, classes[label]!), { recursive: true });
      await sharp(Buffer.from(px), { raw: { width: resize, height: resize, channels: 3 } }).png().toFile(join(root, classes[label]!, `img${k}.png`));
      files.push({ label, px });
    }
    // ImageFolder order: classes sorted, then file names sorted.
    files.sort((a, b) => a.label - b.label);
    const model = await loadBackbone(modelPath);
    const x = new Tensor('F32', [files.length, 3, size, size]);
    files.forEach((f, i) => x.data.set(expectedInput(f.px, resize, size), i * 3 * size * size));
    // The runtime's preprocessing (as eval builds it from the model's info) gives exactly these inputs…
    const info = describeModel(model);
    const preprocess = preprocessFromModel({ in_chans: info.config.in_chans as number, img_size: info.config.img_size as number }, info.metadata, name);
    assert.deepEqual([preprocess.size, preprocess.resize], [size, resize]);
    const dataset = await resolveDataset(root);
    let at = 0;
    for await (const b of dataset.batches({ preprocess, batchSize: 4 })) {
      assert.deepEqual(b.images.data, x.data.subarray(at, at + b.images.size), `batch at image ${at / (3 * size * size)}`);
      at += b.images.size;
    }
    assert.equal(at, x.size);
    // …and the CLI's predictions are those of the graph on them.
    const logits = directLogits(model, x);
    const want = files.map((_, i) => {
      let best = 0;
      for (let c = 1; c < 10; c++) if (logits[i * 10 + c]! > logits[i * 10 + best]!) best = c;
      return best;
    });
    assert.ok(new Set(want).size > 1, 'the test images get different predictions (otherwise preprocessing errors could hide)');
    const predsPath = join(dir, `${name}.preds.json`);
    const r = await runCli(['eval', '--model', modelPath, '--data', root, '--batch', '3', '--json', '--save-preds', predsPath]);
    assert.equal(r.code, 0, r.stderr);
    const summary = lastJson<{ top1: number; n: number; precision: string; device: string }>(r.stdout);
    assert.equal(summary.n, files.length);
    assert.equal(summary.precision, 'fp32');
    assert.equal(summary.device, 'cpu');
    const preds = (JSON.parse(readFileSync(predsPath, 'utf8')) as { pred: number[] }).pred;
    assert.deepEqual(preds, want);
    const top1 = want.filter((p, i) => p === files[i]!.label).length / files.length;
    assert.ok(Math.abs(summary.top1 - top1) < 1e-12, `top-1 ${summary.top1} vs ${top1}`);
  });
}

// ---- calibrate → info / eval / infer (one family end to end through the CLI)

test('calibrate a VMamba at --input-size 48 from an image folder; info, eval, infer and bench run the quantized file (int8, fake-quant)', async (t) => {
  const modelPath = fixture('backbones/vmamba_v2v_small_ds4.safetensors');
  if (!modelPath) return t.skip(NO_FIXTURES);
  const size = 48, side = 60; // resize ⌊48/0.875⌋ = 54, then the centre 48×48
  const root = join(dir, 'calib-folder');
  const classes = ['ant', 'bee'];
  for (let k = 0; k < 8; k++) {
    const cls = classes[k % 2]!;
    mkdirSync(join(root, cls), { recursive: true });
    await sharp(Buffer.from(pattern(side, 20 + k)), { raw: { width: side, height: side, channels: 3 } }).png().toFile(join(root, cls, `img${k}.png`));
  }
  const q = join(dir, 'vmamba-ds4-w8a8.safetensors');
  const c = await runCli(['calibrate', '--model', modelPath, '--calib', root, '--out', q, '--calib-size', '6', '--steps', '3',
    '--input-size', String(size), '--seed', '4', '--json'], { timeoutMs: 240_000 });
  assert.equal(c.code, 0, c.stderr);
  assert.match(c.stderr, /^calibrate: VMamba v2, ptq4vm W8A8 on 6 images of .* at 48×48\n/);
  assert.match(c.stderr, /block 4\/4: loss [0-9.e+-]+ → [0-9.e+-]+ \(/);
  const report = lastJson<{ out: string; metadata: QuantMeta; blocks: { name: string; lossBefore: number; lossAfter: number }[] }>(c.stdout);
  assert.equal(report.out, q);
  assert.deepEqual(report.blocks.map((b) => b.name), ['layers.0.blocks.0', 'layers.1.blocks.0', 'layers.2.blocks.0', 'layers.3.blocks.0']);
  assert.deepEqual(report.metadata.input_size, [size, size]);
  assert.equal(report.metadata.alpha, 0.65, 'VMamba\'s α');
  assert.equal(report.metadata.steps, 3);

  // info: the quantization and the one input size it now takes.
  const j = await runCli(['info', q, '--json']);
  assert.equal(j.code, 0, j.stderr);
  const info = lastJson<{ arch: string; precision: string; quantization: QuantMeta | null }>(j.stdout);
  assert.equal(info.arch, 'vmamba');
  assert.equal(info.precision, 'int8');
  assert.deepEqual(info.quantization, report.metadata);
  const text = await runCli(['info', q]);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /input: +3×48×48 only, the size it was quantized for \(stage grids 12×12, 6×6, 3×3, 2×2\)\n/);
  assert.match(text.stdout, /quantized: +ptq4vm W8A8, activations per-token-static, weights per-channel; calibrated on 6 images \(seed 4, α 0\.65, 3 JLSS steps\)\n/);

  // eval: images preprocessed to 48×48 (not the nominal 224), predictions those of the file in this process.
  const loaded = await loadBackbone(q);
  assert.ok(loaded.isQuantized);
  const preprocess = preprocessFromModel({ in_chans: 3, img_size: size }, loaded.metadata, q);
  const dataset = await resolveDataset(root);
  const parts: Tensor<'F32'>[] = [];
  for await (const b of dataset.batches({ preprocess, batchSize: 8 })) parts.push(b.images);
  assert.equal(parts.length, 1);
  const x = parts[0]!;
  assert.deepEqual(x.shape, [8, 3, size, size]);
  const argmaxRows = (l: Float32Array): number[] => Array.from({ length: l.length / 10 }, (_, i) => {
    let best = 0;
    for (let k = 1; k < 10; k++) if (l[i * 10 + k]! > l[i * 10 + best]!) best = k;
    return best;
  });
  for (const precision of ['int8', 'fake-quant'] as const) {
    const want = argmaxRows(new ModelRunner(loaded, { precision }).forward(x).data);
    const predsPath = join(dir, `vmamba-ds4-${precision}.preds.json`);
    const r = await runCli(['eval', '--model', q, '--data', root, '--batch', '5', '--json', '--save-preds', predsPath,
      ...(precision === 'fake-quant' ? ['--fake-quant'] : [])]);
    assert.equal(r.code, 0, r.stderr);
    const summary = lastJson<{ n: number; precision: string; device: string }>(r.stdout);
    assert.deepEqual([summary.n, summary.precision, summary.device], [8, precision, 'cpu']);
    assert.deepEqual((JSON.parse(readFileSync(predsPath, 'utf8')) as { pred: number[] }).pred, want, precision);
  }

  // infer: the worker's logits are the loaded file's, in int8 and fake-quant; another size is refused.
  const input = join(dir, 'in-48.safetensors');
  await writeSafetensors(input, new Map([['input', x]]));
  for (const precision of ['int8', 'fake-quant'] as const) {
    const out = join(dir, `out-48-${precision}.safetensors`);
    const r = await runCli(['infer', '--model', q, '--input', input, '--out', out, '--precision', precision]);
    assert.equal(r.code, 0, r.stderr);
    const written = await readSafetensors(out);
    assert.equal(written.metadata.precision, precision);
    assert.deepEqual(written.tensors.get('logits')!.toFloat32().data, new ModelRunner(loaded, { precision }).forward(x).data, precision);
  }
  const wrong = join(dir, 'in-56.safetensors');
  await writeSafetensors(wrong, new Map([['input', Tensor.f32([1, 3, 56, 56], Float32Array.from({ length: 3 * 56 * 56 }, (_, i) => Math.sin(i * 0.37)))]]));
  const r = await runCli(['infer', '--model', q, '--input', wrong, '--out', join(dir, 'never.safetensors')]);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /^ptq4vm: input has shape \[1, 3, 56, 56\], the model takes \[B, 3, 48, 48\] \(the size it was quantized for\)\n$/);

  // loadModel (the API the server uses): encoded images preprocessed to the calibrated size, same predictions as eval.
  const api = await loadModel(q);
  try {
    assert.deepEqual(api.inputShape, [3, size, size]);
    // The folder's sorted order: ant/img0, ant/img2, …, ant/img6, bee/img1, … (rows of x).
    const files = [0, 2, 4, 6, 1, 3, 5, 7].map((k) => join(root, classes[k % 2]!, `img${k}.png`));
    const predicted = await api.classify(files.map((f) => readFileSync(f)), { topk: 1 });
    const want = argmaxRows(new ModelRunner(loaded, { precision: 'int8' }).forward(x).data);
    assert.deepEqual(predicted.map((p) => p[0]!.class), want);
  } finally {
    await api.dispose();
  }

  // bench: the quantized file with its own quantization, at its size; an FP file with the speed-only W8A8.
  for (const [model, quant, input] of [
    [q, /^the model's own \(ptq4vm W8A8\)$/, /input 48×48 on cpu/],
    [modelPath, /^speed-only W8A8 /, /input 224×224 on cpu/],
  ] as const) {
    const b = await runCli(['bench', '--model', model, '--batch', '1,2', '--warmup', '0', '--iters', '1', '--json']);
    assert.equal(b.code, 0, b.stderr);
    assert.match(b.stderr, input);
    const lines = b.stdout.trim().split('\n').map((l) => JSON.parse(l) as { bench: string; family: string; batch: number; fp32_ms: number; int8_ms: number; quant: string });
    assert.deepEqual(lines.map((l) => [l.bench, l.family, l.batch]), [['e2e', 'vmamba', 1], ['e2e', 'vmamba', 2]]);
    for (const l of lines) {
      assert.ok(l.fp32_ms > 0 && l.int8_ms > 0, JSON.stringify(l));
      assert.match(l.quant, quant);
    }
  }
});

interface QuantMeta { method: string; wbits: number; abits: number; input_size?: number[]; alpha?: number; steps?: number }
