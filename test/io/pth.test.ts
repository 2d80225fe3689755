import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { f32ToF16, type DType } from '../../lib/tensor/dtype.js';
import { shapeSize, type Shape, type Tensor } from '../../lib/tensor/tensor.js';
import { ConfigError, parseVimConfig, vimTensorShapes, type VimConfig } from '../../lib/models/vim/config.js';
import { ModelFileError } from '../../lib/io/errors.js';
import { PickleError, PickleObject } from '../../lib/io/pickle.js';
import { PthError, PthTensor, openPth, parsePth, selectStateDict } from '../../lib/io/pth.js';
import { FP_MODEL_FORMAT, convertPth, pthModel, readPthModel } from '../../lib/io/pth-model.js';
import { readSafetensors } from '../../lib/io/safetensors.js';
import { ZipError } from '../../lib/io/zip.js';
import { fixture, NO_FIXTURES } from '../helpers.js';
import { Call, Float, OrderedDict, TorchTensor, bytesOf, rng, torchSave, type PyValue } from './torch-writer.js';

const tmp = mkdtempSync(join(tmpdir(), 'ptq4vm-pth-'));
process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));

/** A tiny Vim: 8×8×1 images, patch 4 (L = 5), D = 16, 2 blocks, 3 classes. */
const CFG: VimConfig = parseVimConfig({ arch: 'vim', img_size: 8, patch_size: 4, stride: 4, in_chans: 1, embed_dim: 16, depth: 2, d_state: 4, expand: 2, d_conv: 4, num_classes: 3, eps: 1e-5 }, 'test');
const SHAPES = vimTensorShapes(CFG);

interface Expected {
  dtype: DType;
  shape: Shape;
  /** Dense row-major values as raw bits: float32 values, or f16 bit patterns. */
  values: Float32Array | Uint16Array;
}

interface Built {
  bytes: Uint8Array;
  model: Map<string, Expected>;
  ema: Map<string, Expected>;
}

interface BuildOptions {
  /** Change the model state dict before it is written (names → expected values). */
  edit?: (model: Map<string, Expected>) => void;
  /** Storage of head.weight: how many elements the persistent id claims and the entry holds. */
  headStorage?: { claimed?: number; held?: number };
  bare?: boolean;
  zip64?: boolean;
  byteorder?: string | null;
  pickle?: Uint8Array;
  seed?: number;
}

function randomValues(n: number, rand: () => number): Float32Array {
  return Float32Array.from({ length: n }, () => rand() * 2 - 1);
}

/**
 * A checkpoint laid out like the official Vim ones: {model, model_ema, optimizer, lr_scheduler,
 * epoch, scaler, args (argparse.Namespace)}, the state dicts OrderedDicts with `_metadata`.
 * Inside `model`: parameters and plain tensors; head.weight a transposed (non-contiguous) view
 * with a storage offset; D and D_b of block 0 sharing one storage; pos_embed at an offset into a
 * larger storage; cls_token with arbitrary strides on its size-1 dims; norm_f.weight in a
 * HalfStorage; conv1d weights [E, 1, 4] as torch keeps them.
 */
function buildCheckpoint(opts: BuildOptions = {}): Built {
  const rand = rng(opts.seed ?? 11);
  const storages = new Map<string, Uint8Array>();
  let nextKey = 0;
  const addStorage = (type: string, data: Float32Array | Uint16Array, claimed = data.length) => {
    const key = String(nextKey++);
    storages.set(key, bytesOf(data).slice());
    return { key, type, numel: claimed };
  };
  const contiguousStrides = (shape: Shape) => {
    const s = new Array<number>(shape.length);
    let acc = 1;
    for (let i = shape.length - 1; i >= 0; i--) {
      s[i] = acc;
      acc *= shape[i]!;
    }
    return s;
  };

  const model = new Map<string, Expected>();
  for (const [name, shape] of SHAPES) model.set(name, { dtype: 'F32', shape, values: randomValues(shapeSize(shape), rand) });
  const f16 = Uint16Array.from(model.get('norm_f.weight')!.values as Float32Array, (x) => f32ToF16(x));
  model.set('norm_f.weight', { dtype: 'F16', shape: [16], values: f16 });
  opts.edit?.(model);

  const writeDict = (dict: Map<string, Expected>, special: boolean): Map<PyValue, PyValue> => {
    const out = new Map<PyValue, PyValue>();
    const shared = { D: 'layers.0.mixer.D', Db: 'layers.0.mixer.D_b' };
    let sharedStorage: { key: string; type: string; numel: number } | undefined;
    for (const [name, e] of dict) {
      const shape = [...e.shape];
      const n = shapeSize(shape);
      const type = e.dtype === 'F16' ? 'HalfStorage' : 'FloatStorage';
      if (special && name === 'head.weight') {
        // Stored transposed after 5 unused elements: element (i, j) at 5 + j·rows + i.
        const [rows, cols] = shape as [number, number];
        const held = opts.headStorage?.held ?? 5 + n;
        const st = new Float32Array(held);
        for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) if (5 + j * rows + i < held) st[5 + j * rows + i] = (e.values as Float32Array)[i * cols + j]!;
        out.set(name, new TorchTensor(addStorage(type, st, opts.headStorage?.claimed ?? held), 5, shape, [1, rows], { parameter: true }));
      } else if (special && (name === shared.D || name === shared.Db) && dict.has(shared.D) && dict.has(shared.Db)) {
        if (!sharedStorage) {
          const both = new Float32Array(2 * n);
          both.set(dict.get(shared.D)!.values as Float32Array, 0);
          both.set(dict.get(shared.Db)!.values as Float32Array, n);
          sharedStorage = addStorage(type, both);
        }
        out.set(name, new TorchTensor(sharedStorage, name === shared.D ? 0 : n, shape, [1], { parameter: true }));
      } else if (special && name === 'pos_embed') {
        const st = new Float32Array(7 + n + 3);
        st.set(e.values as Float32Array, 7);
        out.set(name, new TorchTensor(addStorage(type, st), 7, shape, contiguousStrides(shape)));
      } else if (special && name === 'cls_token') {
        out.set(name, new TorchTensor(addStorage(type, e.values), 0, shape, [999, 123, 1]));
      } else {
        out.set(name, new TorchTensor(addStorage(type, e.values), 0, shape, contiguousStrides(shape), { parameter: name.endsWith('weight') }));
      }
    }
    return out;
  };

  const ema = new Map<string, Expected>();
  for (const [name, e] of model) {
    ema.set(name, e.dtype === 'F32' ? { ...e, values: (e.values as Float32Array).map((x) => x * 0.5) } : e);
  }
  const modelDict = writeDict(model, true);
  const metadataAttr = new Map<PyValue, PyValue>([['_metadata', new OrderedDict(new Map<PyValue, PyValue>([['', new Map<PyValue, PyValue>([['version', 1]])]]))]]);
  let root: PyValue;
  if (opts.bare) root = new OrderedDict(modelDict, metadataAttr);
  else {
    const expAvg = new TorchTensor(addStorage('FloatStorage', randomValues(48, rand)), 0, [3, 16], [16, 1]);
    root = new Map<PyValue, PyValue>([
      ['model', new OrderedDict(modelDict, metadataAttr)],
      ['model_ema', new OrderedDict(writeDict(ema, false))],
      ['optimizer', new Map<PyValue, PyValue>([
        ['state', new Map<PyValue, PyValue>([[0, new Map<PyValue, PyValue>([['step', 10], ['exp_avg', expAvg]])]])],
        ['param_groups', [new Map<PyValue, PyValue>([['lr', new Float(5e-4)], ['weight_decay', new Float(0.05)], ['params', [0, 1, 2]]])]],
      ])],
      ['lr_scheduler', new Map<PyValue, PyValue>([['last_epoch', 299], ['_last_lr', [new Float(1e-5)]]])],
      ['epoch', 299],
      ['scaler', new Map<PyValue, PyValue>([['scale', new Float(65536)], ['_growth_tracker', 0]])],
      ['args', new Call('argparse', 'Namespace', [], { newobj: true, state: new Map<PyValue, PyValue>([['model', 'vim_tiny_patch16_224_bimambav2'], ['lr', new Float(5e-4)], ['input_size', 8]]) })],
    ]);
  }
  const bytes = torchSave(root, storages, { archive: 'vim_t_midclstok', zip64: opts.zip64, byteorder: opts.byteorder, pickle: opts.pickle });
  return { bytes, model, ema };
}

function assertTensorsEqual(got: ReadonlyMap<string, Tensor>, want: ReadonlyMap<string, Expected>): void {
  assert.deepEqual([...got.keys()].sort(), [...want.keys()].sort());
  for (const [name, e] of want) {
    const t = got.get(name)!;
    assert.equal(t.dtype, e.dtype, name);
    assert.deepEqual([...t.shape], [...e.shape], name);
    assert.deepEqual(Buffer.from(bytesOf(t.data)), Buffer.from(bytesOf(e.values)), `${name}: values`);
  }
}

function save(name: string, bytes: Uint8Array): string {
  const p = join(tmp, name);
  writeFileSync(p, bytes);
  return p;
}

test('a hand-made official-layout checkpoint converts exactly: strides, offsets, shared and Half storages', async () => {
  const built = buildCheckpoint();
  const inPath = save('vim_t_midclstok.pth', built.bytes);
  const outPath = join(tmp, 'vim-t.safetensors');
  const result = await convertPth(inPath, outPath, { imgSize: 8 });
  assert.deepEqual(result.config, CFG);
  assert.equal(result.key, 'model');
  assert.equal(result.tensorCount, SHAPES.size);
  const file = await readSafetensors(outPath);
  assertTensorsEqual(file.tensors, built.model);
  assert.deepEqual([...file.tensors.get('layers.0.mixer.conv1d.weight')!.shape], [32, 1, 4], 'conv1d kept as [E, 1, 4]');
  assert.equal(file.metadata.format, FP_MODEL_FORMAT);
  assert.deepEqual(parseVimConfig(file.metadata.config, 'converted'), CFG);
  assert.equal(file.metadata.source, 'vim_t_midclstok.pth');
  assert.equal(file.metadata.key, 'model');

  // The rest of the checkpoint, as inert data.
  const ckpt = openPth(inPath);
  try {
    const root = ckpt.root as Map<string, unknown>;
    assert.deepEqual([...root.keys()], ['model', 'model_ema', 'optimizer', 'lr_scheduler', 'epoch', 'scaler', 'args']);
    assert.equal(ckpt.archiveName, 'vim_t_midclstok');
    assert.equal(ckpt.version, '3');
    const args = root.get('args');
    assert.ok(args instanceof PickleObject && args.global.qualifiedName === 'argparse.Namespace');
    assert.equal((args.state as Map<string, unknown>).get('input_size'), 8);
    const opt = root.get('optimizer') as Map<string, Map<number, Map<string, unknown>>>;
    assert.ok(opt.get('state')!.get(0)!.get('exp_avg') instanceof PthTensor);
    assert.equal(root.get('epoch'), 299);
  } finally {
    ckpt.close();
  }
});

test('--key model_ema picks the EMA weights; ZIP64 and checkpoints without a byteorder record read too', async () => {
  const built = buildCheckpoint({ zip64: true, byteorder: null });
  const path = save('zip64.pth', built.bytes);
  const ema = await readPthModel(path, { key: 'model_ema', imgSize: 8 });
  assert.equal(ema.key, 'model_ema');
  assertTensorsEqual(ema.tensors, built.ema);
  const model = await readPthModel(path, { imgSize: 8 });
  assertTensorsEqual(model.tensors, built.model);
});

test('a bare state dict is accepted (unless another key is asked for)', async () => {
  const built = buildCheckpoint({ bare: true });
  const path = save('bare.pth', built.bytes);
  const m = await readPthModel(path, { imgSize: 8 });
  assert.equal(m.key, '');
  assertTensorsEqual(m.tensors, built.model);
  await assert.rejects(readPthModel(path, { key: 'model_ema', imgSize: 8 }), /no "model_ema" entry in the checkpoint \(its keys: "cls_token", .*\); choose one with --key/);
});

async function rejectsWith(p: Promise<unknown>, cls: new (...a: never[]) => Error, pattern: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof cls, `expected ${cls.name}, got ${String(e)}`);
    assert.match((e as Error).message, pattern);
    assert.ok(!/[\r\n]/.test((e as Error).message));
    return true;
  });
}

test('state dicts that are not a Vim, or not this Vim, are refused by name', async () => {
  const main = save('main.pth', buildCheckpoint().bytes);
  await rejectsWith(readPthModel(main, { key: 'nope' }), PthError, /main\.pth: no "nope" entry in the checkpoint \(its keys: "model", "model_ema", "optimizer", "lr_scheduler", "epoch", "scaler", "args"\)/);
  await rejectsWith(readPthModel(main, { key: 'optimizer' }), PthError, /state dict "optimizer" entry "state" is a dict, not a tensor/);
  await rejectsWith(readPthModel(main, { key: 'epoch' }), PthError, /checkpoint entry "epoch" is number, not a state dict/);

  const resnet = save('resnet.pth', buildCheckpoint({ edit: (m) => {
    m.clear();
    m.set('conv1.weight', { dtype: 'F32', shape: [4, 1, 3, 3], values: new Float32Array(36).fill(0.5) });
    m.set('fc.weight', { dtype: 'F32', shape: [3, 4], values: new Float32Array(12).fill(0.25) });
  } }).bytes);
  await rejectsWith(readPthModel(resnet), ConfigError, /resnet\.pth \[model\]: not a Vim state dict \(no tensor patch_embed\.proj\.weight\)/);

  const extra = save('extra.pth', buildCheckpoint({ edit: (m) => {
    m.set('head_dist.weight', { dtype: 'F32', shape: [3, 16], values: new Float32Array(48).fill(1) });
    m.set('rope.freqs_cos', { dtype: 'F32', shape: [5, 16], values: new Float32Array(80).fill(1) });
  } }).bytes);
  await rejectsWith(readPthModel(extra, { imgSize: 8 }), PthError, /extra\.pth \[model\]: not a Vim state dict: 2 tensors a Vim does not have \("head_dist\.weight", "rope\.freqs_cos"\)/);

  const missing = save('missing.pth', buildCheckpoint({ edit: (m) => m.delete('layers.1.mixer.D_b') }).bytes);
  await rejectsWith(readPthModel(missing, { imgSize: 8 }), ConfigError, /missing tensor layers\.1\.mixer\.D_b/);

  const wrong = save('wrong.pth', buildCheckpoint({ edit: (m) => m.set('layers.1.mixer.out_proj.weight', { dtype: 'F32', shape: [16, 31], values: new Float32Array(16 * 31).fill(1) }) }).bytes);
  await rejectsWith(readPthModel(wrong, { imgSize: 8 }), ConfigError, /tensor layers\.1\.mixer\.out_proj\.weight has shape \[16, 31\], the config needs \[16, 32\]/);
});

test('storages too small for a tensor\'s strides, or truncated, are errors naming tensor and storage', async () => {
  // The storage honestly holds 40 elements, but head.weight's offset and strides reach 53.
  const small = save('small.pth', buildCheckpoint({ headStorage: { held: 40 } }).bytes);
  await rejectsWith(readPthModel(small, { imgSize: 8 }), PthError, /tensor "head\.weight": storage "vim_t_midclstok\/data\/\d+" holds 40 elements but size \[3, 16\], stride \[1, 3\], offset 5 need 53/);
  // The persistent id claims 53 elements, the entry holds only 30.
  const truncated = save('truncated.pth', buildCheckpoint({ headStorage: { held: 30, claimed: 53 } }).bytes);
  await rejectsWith(readPthModel(truncated, { imgSize: 8 }), PthError, /truncated storage "vim_t_midclstok\/data\/\d+": 120 bytes, but 53 F32 elements need 212/);
});

test('bad files: unsupported pickle opcode, corrupt zip, not a zip, legacy format, big-endian, empty', async () => {
  // data.pkl with an EXT1 opcode (a copyreg extension code: never supported).
  const ext = save('ext.pth', buildCheckpoint({ pickle: Uint8Array.of(0x80, 2, 0x7d, 0x82, 7, 0x2e) }).bytes);
  await rejectsWith(readPthModel(ext), PickleError, /ext\.pth \[vim_t_midclstok\/data\.pkl\]: unsupported pickle opcode EXT1 \(0x82\) at offset 3/);

  const good = buildCheckpoint().bytes;
  await rejectsWith(readPthModel(save('cut.pth', good.subarray(0, good.length - 100))), ZipError, /cut\.pth: corrupt zip: no end-of-central-directory record/);
  const flipped = good.slice();
  flipped[100] ^= 0xff; // inside data.pkl: the CRC catches it
  await rejectsWith(readPthModel(save('flip.pth', flipped)), ZipError, /entry "vim_t_midclstok\/data\.pkl": CRC mismatch/);
  await rejectsWith(readPthModel(save('text.pth', Buffer.from('hello, I am not a checkpoint'))), PthError, /text\.pth: not a PyTorch checkpoint \(not a zip archive\)/);
  // torch < 1.6 files start with a protocol-2 pickle of a magic number.
  await rejectsWith(readPthModel(save('legacy.pth', Uint8Array.of(0x80, 2, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e))), PthError, /legacy \(non-zip, torch < 1\.6\) checkpoint format is not supported/);
  await rejectsWith(readPthModel(save('big.pth', buildCheckpoint({ byteorder: 'big' }).bytes)), PthError, /big-endian checkpoints are not supported/);
  await rejectsWith(readPthModel(save('empty.pth', new Uint8Array(0))), PthError, /empty\.pth: file is empty/);
  await assert.rejects(readPthModel(join(tmp, 'absent.pth')), /ENOENT/);
});

test('a failed conversion leaves no output (and an existing output untouched)', async () => {
  const bad = save('bad-convert.pth', buildCheckpoint({ edit: (m) => m.delete('head.bias') }).bytes);
  const out = join(tmp, 'never.safetensors');
  await assert.rejects(convertPth(bad, out, { imgSize: 8 }), /missing tensor head\.bias/);
  assert.ok(!existsSync(out));
  const existing = join(tmp, 'existing.safetensors');
  writeFileSync(existing, 'keep me');
  await assert.rejects(convertPth(bad, existing, { imgSize: 8 }));
  assert.equal(readFileSync(existing, 'utf8'), 'keep me');
});

test('the reference checkpoint vim-ti-d2.pth: its model tensors equal vim-ti-d2.safetensors exactly', async (t) => {
  const pth = fixture('vim-ti-d2.pth');
  const st = fixture('vim-ti-d2.safetensors');
  if (!pth || !st) return t.skip(NO_FIXTURES);
  const start = performance.now();
  const model = await readPthModel(pth);
  t.diagnostic(`vim-ti-d2.pth read and checked in ${(performance.now() - start).toFixed(1)} ms`);
  const ref = await readSafetensors(st);
  assert.equal(model.tensors.size, ref.tensors.size);
  for (const [name, r] of ref.tensors) {
    const g = model.tensors.get(name);
    assert.ok(g, `missing ${name}`);
    assert.equal(g.dtype, r.dtype, name);
    assert.deepEqual([...g.shape], [...r.shape], name);
    assert.ok(Buffer.from(bytesOf(g.data)).equals(Buffer.from(bytesOf(r.data))), `${name}: values differ`);
  }
  assert.deepEqual(model.config, parseVimConfig(ref.metadata.config, st));
  // The other parts of the official layout are present and inert.
  const ckpt = openPth(pth);
  try {
    const root = ckpt.root as Map<string, unknown>;
    for (const k of ['model', 'model_ema', 'optimizer', 'lr_scheduler', 'epoch', 'scaler', 'args']) assert.ok(root.has(k), k);
    const args = root.get('args');
    assert.ok(args instanceof PickleObject && args.global.qualifiedName === 'argparse.Namespace');
    const ema = selectStateDict(ckpt, 'model_ema');
    assert.equal(ema.tensors.size, ref.tensors.size);
    for (const [name, lazy] of ema.tensors) assert.equal(lazy.load(name).size, shapeSize(ref.tensors.get(name)!.shape));
  } finally {
    ckpt.close();
  }
  const out = join(tmp, 'vim-ti-d2.converted.safetensors');
  await convertPth(pth, out);
  const converted = await readSafetensors(out);
  for (const [name, r] of ref.tensors) assert.ok(Buffer.from(bytesOf(converted.tensors.get(name)!.data)).equals(Buffer.from(bytesOf(r.data))), name);
});

/**
 * Mutates `good` in place (restoring it afterwards) or truncates it, then parses and loads the
 * Vim model from memory: the outcome must be a valid model or a clean one-line error.
 */
function fuzz(good: Uint8Array, iterations: number, seed: number, hot: { pickle: [number, number]; zip: [number, number][] }, imgSize: number | undefined): { valid: number; errors: Map<string, number>; slowestMs: number } {
  const rand = rng(seed);
  const errors = new Map<string, number>();
  let valid = 0;
  let slowestMs = 0;
  for (let i = 0; i < iterations; i++) {
    const t0 = performance.now();
    let bytes = good;
    const saved: [number, number][] = [];
    const kind = i % 4;
    if (kind === 0) bytes = good.subarray(0, Math.floor(rand() * good.length));
    else {
      const flips = 1 + Math.floor(rand() * 3);
      for (let k = 0; k < flips; k++) {
        const [lo, hi] = kind === 1 ? hot.pickle : kind === 2 ? hot.zip[Math.floor(rand() * hot.zip.length)]! : [0, good.length];
        const at = lo + Math.floor(rand() * (hi - lo));
        saved.push([at, good[at]!]);
        good[at] = rand() < 0.5 ? good[at]! ^ (1 << Math.floor(rand() * 8)) : Math.floor(rand() * 256);
      }
    }
    try {
      const ckpt = parsePth(bytes, 'fuzz.pth', { verifyCrc: i % 2 === 0 });
      try {
        const m = pthModel(ckpt, { imgSize });
        for (const [name, t] of m.tensors) assert.equal(t.data.length, shapeSize(t.shape), name);
        valid++;
      } finally {
        ckpt.close();
      }
    } catch (e) {
      assert.ok(e instanceof ModelFileError || e instanceof ConfigError, `iteration ${i}: not a clean error: ${(e as Error)?.stack ?? String(e)}`);
      assert.ok(!/[\r\n]/.test((e as Error).message));
      const kindOf = (e as Error).message.replace(/^[^:]*: /, '').replace(/"[^"]*"|\d+/g, '…').slice(0, 50);
      errors.set(kindOf, (errors.get(kindOf) ?? 0) + 1);
    } finally {
      for (const [at, v] of saved.reverse()) good[at] = v;
    }
    slowestMs = Math.max(slowestMs, performance.now() - t0);
  }
  return { valid, errors, slowestMs };
}

/** Byte ranges worth aiming at: data.pkl (stored first), every local header, the central directory and end records. */
function structuralRanges(bytes: Uint8Array): { pickle: [number, number]; zip: [number, number][] } {
  const ckpt = parsePth(bytes, 'ranges');
  ckpt.close();
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const pklSize = v.getUint32(22, true);
  const pklStart = 30 + v.getUint16(26, true) + v.getUint16(28, true);
  const ranges: [number, number][] = [];
  for (let i = 0; i + 4 <= bytes.length; i++) {
    const sig = v.getUint32(i, true);
    if (sig === 0x04034b50) ranges.push([i, Math.min(i + 64, bytes.length)]);
    if (sig === 0x02014b50 || sig === 0x06054b50) {
      ranges.push([i, bytes.length]);
      break;
    }
  }
  return { pickle: [pklStart, pklStart + pklSize], zip: ranges };
}

test('fuzz: byte flips and truncations of a hand-made checkpoint never crash', (t) => {
  const good = buildCheckpoint().bytes;
  const start = Date.now();
  const { valid, errors, slowestMs } = fuzz(good, 600, 21, structuralRanges(good), 8);
  t.diagnostic(`valid ${valid}; ${Date.now() - start} ms, slowest ${slowestMs.toFixed(1)} ms; errors: ${[...errors].sort((a, b) => b[1] - a[1]).slice(0, 8).map(([k, n]) => `${n}× ${k}`).join(' | ')}`);
  assert.ok(valid > 20, `only ${valid} valid results`);
  assert.ok([...errors.values()].reduce((a, b) => a + b, 0) > 300);
  assert.ok(Date.now() - start < 20000);
});

test('fuzz: byte flips and truncations of vim-ti-d2.pth never crash', (t) => {
  const path = fixture('vim-ti-d2.pth');
  if (!path) return t.skip(NO_FIXTURES);
  const good = new Uint8Array(readFileSync(path));
  const start = Date.now();
  const { valid, errors, slowestMs } = fuzz(good, 300, 22, structuralRanges(good), undefined);
  t.diagnostic(`valid ${valid}; ${Date.now() - start} ms, slowest ${slowestMs.toFixed(1)} ms; errors: ${[...errors].sort((a, b) => b[1] - a[1]).slice(0, 8).map(([k, n]) => `${n}× ${k}`).join(' | ')}`);
  assert.ok(valid > 10);
  assert.ok(Date.now() - start < 30000);
});
