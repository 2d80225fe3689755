/**
 * Loading and converting the other backbones: family detection, config inference from the shapes
 * of the real released models (KEYS.json), `.pth` → safetensors conversion (official checkpoint
 * layout, no config inside) that reproduces the fixture's logits, VMamba's 2025 key names, and
 * clear errors for state dicts that do not fit.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { convertAnyPth } from '../../lib/io/pth-model.js';
import { readSafetensors } from '../../lib/io/safetensors.js';
import { backboneConfig, detectFamily, type BackboneFamily } from '../../lib/models/common/family.js';
import { backboneForward, type BackboneModel } from '../../lib/models/common/forward.js';
import { buildAnyModel, familyOf, loadAnyModel, ModelLoadError } from '../../lib/models/load.js';
import { localVimTensorShapes, LOCAL_VIM_TINY_DIRECTIONS, type LocalVimConfig } from '../../lib/models/localvim/config.js';
import { localVMambaTensorShapes, LOCAL_VSSM_TINY_DIRECTIONS, type LocalVMambaConfig } from '../../lib/models/localvmamba/config.js';
import { vmambaTensorShapes, type VMambaConfig } from '../../lib/models/vmamba/config.js';
import { VimModel } from '../../lib/models/vim/model.js';
import { CpuExecutor } from '../../lib/runtime/cpu-executor.js';
import { Tensor, type Shape } from '../../lib/tensor/tensor.js';
import { fixture, NO_FIXTURES } from '../helpers.js';
import { writeOfficialPth } from './backbone-pth.js';

const tmp = mkdtempSync(join(tmpdir(), 'ptq4vm-backbones-'));
process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));

interface KeysEntry { constructor: unknown; n_params: number | null; keys: [string, number[], string][] }
function realModel(name: string): KeysEntry | null {
  const p = fixture('backbones/KEYS.json');
  if (!p) return null;
  return (JSON.parse(readFileSync(p, 'utf8')) as Record<string, KeysEntry>)[`${name} (real)`] ?? null;
}
const shapesOf = (e: KeysEntry): Map<string, Shape> => new Map(e.keys.map(([k, s]) => [k, s]));
const count = (m: ReadonlyMap<string, Shape>, skip = (_: string): boolean => false): number =>
  [...m].reduce((n, [k, s]) => (skip(k) ? n : n + s.reduce((a, b) => a * b, 1)), 0);

test('config inference for the released models from their key lists (no config in official checkpoints)', (t) => {
  const vim = realModel('local_vim_tiny');
  if (!vim) return t.skip(NO_FIXTURES);
  const check = (name: string, family: BackboneFamily): { cfg: ReturnType<typeof backboneConfig>; e: KeysEntry } => {
    const e = realModel(name)!;
    const shapes = shapesOf(e);
    assert.equal(detectFamily(shapes), family, name);
    return { cfg: backboneConfig(family, shapes, name, null), e };
  };
  {
    const { cfg, e } = check('local_vim_tiny', 'localvim');
    const c = cfg as LocalVimConfig;
    assert.deepEqual([c.depth, c.embed_dim, c.expand, c.d_state, c.dt_rank, c.d_conv, c.img_size, c.patch_size, c.num_classes], [20, 192, 2, 16, 12, 4, 224, 16, 1000]);
    assert.equal(c.rope, true);
    assert.equal(c.cls_token, false);
    assert.deepEqual(c.directions, LOCAL_VIM_TINY_DIRECTIONS.map((s) => s.split(' ')));
    assert.equal(count(localVimTensorShapes(c), (k) => k.startsWith('rope.')), e.n_params);
  }
  {
    const { cfg, e } = check('local_vim_tiny_middle_cls_token', 'localvim');
    const c = cfg as LocalVimConfig;
    assert.equal(c.rope, false);
    assert.equal(c.cls_token, true);
    assert.equal(count(localVimTensorShapes(c)), e.n_params);
  }
  {
    const { cfg, e } = check('vmamba_v2v_tiny_224', 'vmamba');
    const c = cfg as VMambaConfig;
    assert.deepEqual(c.dims, [96, 192, 384, 768]);
    assert.deepEqual(c.depths, [2, 2, 8, 2]);
    assert.deepEqual(c.dt_ranks, [6, 12, 24, 48]);
    assert.deepEqual([c.d_state, c.ssm_ratio, c.mlp_ratio, c.d_conv, c.conv_bias, c.num_classes], [1, 1, 4, 3, false, 1000]);
    assert.equal(count(vmambaTensorShapes(c)), e.n_params);
  }
  {
    const { cfg, e } = check('local_vssm_tiny', 'localvmamba');
    const c = cfg as LocalVMambaConfig;
    assert.deepEqual(c.dims, [96, 192, 384, 768]);
    assert.deepEqual(c.depths, [2, 2, 9, 2]);
    assert.deepEqual([c.d_state, c.ssm_ratio, c.d_conv, c.patch_size], [16, 2, 3, 4]);
    assert.deepEqual(c.directions, LOCAL_VSSM_TINY_DIRECTIONS.map((s) => s.split(' ')));
    assert.equal(count(localVMambaTensorShapes(c)), e.n_params);
  }
});

const writePth = writeOfficialPth;

async function logitsOf(model: BackboneModel, input: Tensor<'F32'>): Promise<Float32Array> {
  const ops = new CpuExecutor({ quantMode: 'off' });
  const out = ops.toHost(backboneForward(ops, model, input));
  ops.endForward();
  return out;
}

const CONVERT_CASES: { name: string; needsDirections: boolean }[] = [
  { name: 'vmamba_v2v_small', needsDirections: false },
  { name: 'local_vim_small_midcls_112pad', needsDirections: true },
  { name: 'local_vssm_small', needsDirections: true },
];

for (const { name, needsDirections } of CONVERT_CASES) {
  test(`convert: ${name} as an official .pth (no config) → safetensors → the same logits`, async (t) => {
    const modelPath = fixture(`backbones/${name}.safetensors`);
    const refPath = fixture(`backbones/${name}.ref.safetensors`);
    if (!modelPath || !refPath) return t.skip(NO_FIXTURES);
    const file = await readSafetensors(modelPath);
    const input = (await readSafetensors(refPath)).tensors.get('input') as Tensor<'F32'>;
    const direct = await loadAnyModel(modelPath);
    assert.ok(!(direct instanceof VimModel));
    const pth = join(tmp, `${name}.pth`);
    writePth(pth, file.tensors);
    const out = join(tmp, `${name}.safetensors`);
    const directions = JSON.parse(file.metadata.config!).directions as string[][] | undefined;
    if (needsDirections) {
      await assert.rejects(convertAnyPth(pth, out), /scan directions .* not recorded; give them/);
      await assert.rejects(loadAnyModel(pth), /scan directions .* not recorded/);
    }
    const r = await convertAnyPth(pth, out, needsDirections ? { directions } : {});
    assert.equal(r.family, familyOf(direct));
    assert.equal(r.key, 'model');
    assert.equal(r.tensorCount, file.tensors.size);
    assert.match(r.description, /^(VMamba v2|LocalVim|LocalVMamba)/);
    const converted = await loadAnyModel(out);
    assert.ok(!(converted instanceof VimModel));
    assert.deepEqual(converted.config, direct.config, 'the converted file records the whole config');
    assert.deepEqual(await logitsOf(converted, input), await logitsOf(direct, input));
    // A .pth also loads directly.
    const fromPth = await loadAnyModel(pth, needsDirections ? { directions } : {});
    assert.deepEqual(await logitsOf(fromPth as BackboneModel, input), await logitsOf(direct, input));
  });
}

test("VMamba: the 2025 single-file key names (x_proj.weight, dt_projs.weight/bias) load to the same model", async (t) => {
  const modelPath = fixture('backbones/vmamba_v2v_small_ds4.safetensors');
  const refPath = fixture('backbones/vmamba_v2v_small_ds4.ref.safetensors');
  if (!modelPath || !refPath) return t.skip(NO_FIXTURES);
  const file = await readSafetensors(modelPath);
  const input = (await readSafetensors(refPath)).tensors.get('input') as Tensor<'F32'>;
  const renamed = new Map<string, Tensor>();
  for (const [k, v] of file.tensors) {
    const m = /^(.*\.op\.)(x_proj_weight|dt_projs_weight|dt_projs_bias)$/.exec(k);
    if (!m) renamed.set(k, v);
    else if (m[2] === 'x_proj_weight') renamed.set(m[1] + 'x_proj.weight', v.reshape([v.dim(0) * v.dim(1), v.dim(2)]));
    else if (m[2] === 'dt_projs_weight') renamed.set(m[1] + 'dt_projs.weight', v.reshape([v.dim(0) * v.dim(1), v.dim(2), 1]));
    else renamed.set(m[1] + 'dt_projs.bias', v.reshape([v.size]));
  }
  const a = buildAnyModel(renamed, {}, 'renamed');
  const b = await loadAnyModel(modelPath);
  assert.ok(!(a instanceof VimModel) && !(b instanceof VimModel));
  assert.deepEqual(await logitsOf(a, input), await logitsOf(b, input));
});

test('loading: Vim still loads as a Vim; mismatched state dicts fail with messages naming the tensor', async (t) => {
  const vimPath = fixture('vim-ti-d2.safetensors');
  const lvPath = fixture('backbones/local_vim_small_112pad.safetensors');
  const vmPath = fixture('backbones/vmamba_v2v_small_ds4.safetensors');
  if (!vimPath || !lvPath || !vmPath) return t.skip(NO_FIXTURES);
  assert.ok((await loadAnyModel(vimPath)) instanceof VimModel);
  const lv = await readSafetensors(lvPath);
  const vm = await readSafetensors(vmPath);
  const edit = (src: ReadonlyMap<string, Tensor>, f: (m: Map<string, Tensor>) => void): Map<string, Tensor> => {
    const m = new Map(src);
    f(m);
    return m;
  };
  assert.throws(() => buildAnyModel(edit(lv.tensors, (m) => m.delete('layers.1.mixer.attn.norm.bias')), lv.metadata, 'x.safetensors'),
    (e: Error) => e instanceof ModelLoadError && /missing tensor layers\.1\.mixer\.attn\.norm\.bias/.test(e.message));
  assert.throws(() => buildAnyModel(edit(lv.tensors, (m) => m.set('layers.0.mixer.D_2', new Tensor('F32', [7]))), lv.metadata, 'x.safetensors'),
    /tensor layers\.0\.mixer\.D_2 has shape \[7\], the config needs \[128\]/);
  assert.throws(() => buildAnyModel(edit(lv.tensors, (m) => m.set('extra.weight', new Tensor('F32', [2]))), lv.metadata, 'x.safetensors'),
    /unexpected tensor extra\.weight for a LocalVim/);
  const lvCfg = JSON.parse(lv.metadata.config!);
  assert.throws(() => buildAnyModel(lv.tensors, { config: JSON.stringify({ ...lvCfg, directions: [['h', 'v'], ['h', 'v', 'w2', 'w2_flip']] }) }, 'x'),
    /layer 0 has 4 scan directions in its tensors, the config lists 2/);
  assert.throws(() => buildAnyModel(lv.tensors, { config: JSON.stringify({ ...lvCfg, directions: [['h', 'q', 'w2', 'w2_flip'], ['h', 'v', 'w2', 'w2_flip']] }) }, 'x'),
    /expected a non-empty list of scan directions/);
  const vmCfg = JSON.parse(vm.metadata.config!);
  assert.throws(() => buildAnyModel(vm.tensors, { config: JSON.stringify({ ...vmCfg, forward_type: 'v2' }) }, 'x'), /forward_type = "v2" is not supported/);
  assert.throws(() => buildAnyModel(vm.tensors, { config: JSON.stringify({ ...vmCfg, ssm_d_state: 16 }) }, 'x'), /ssm_d_state 16 disagrees with the tensors \(4\)/);
  assert.throws(() => buildAnyModel(vm.tensors, { config: JSON.stringify(vmCfg), format: 'ptq4vm-quant/1' }, 'x'), /quantized model without __metadata__\.quant/);
  assert.throws(() => buildAnyModel(new Map([['foo', new Tensor('F32', [1])]]), {}, 'x'), /not a Vim, LocalVim, VMamba or LocalVMamba state dict/);
});

test('forward input checks: wrong channels or (LocalVim) wrong size are refused', async (t) => {
  const lvPath = fixture('backbones/local_vim_small_112pad.safetensors');
  const vmPath = fixture('backbones/vmamba_v2v_small_ds4.safetensors');
  if (!lvPath || !vmPath) return t.skip(NO_FIXTURES);
  const lv = (await loadAnyModel(lvPath)) as BackboneModel;
  const vm = (await loadAnyModel(vmPath)) as BackboneModel;
  const ops = new CpuExecutor({ quantMode: 'off' });
  assert.throws(() => backboneForward(ops, lv, new Tensor('F32', [1, 3, 96, 112])), /LocalVim: images have shape \[1, 3, 96, 112\], the model takes \[B, 3, 112, 112\]/);
  assert.throws(() => backboneForward(ops, vm, new Tensor('F32', [1, 1, 48, 40])), /VMamba: images have shape/);
  // VMamba takes any size, odd ones included (⌈H/2⌉ in every stride-2 conv).
  const x = Tensor.f32([1, 3, 21, 13], Float32Array.from({ length: 3 * 21 * 13 }, (_, i) => Math.sin(i)));
  const logits = ops.toHost(backboneForward(ops, vm, x));
  assert.equal(logits.length, 10);
  assert.ok(logits.every(Number.isFinite));
  ops.endForward();
  // LocalVim at an image size that is not a multiple of the patch: zero-padded at the bottom/right
  // (timm's dynamic_img_pad), so 100×100 equals the same image padded to 112×112 by hand.
  const lv100 = await loadAnyModel(lvPath, { imgSize: 100 });
  assert.ok(!(lv100 instanceof VimModel) && lv100.arch === 'localvim' && lv100.config.img_size === 100);
  const small = Tensor.f32([1, 3, 100, 100], Float32Array.from({ length: 3 * 100 * 100 }, (_, i) => Math.cos(i * 0.37)));
  const padded = new Tensor('F32', [1, 3, 112, 112]);
  for (let c = 0; c < 3; c++) for (let y = 0; y < 100; y++) padded.data.set(small.data.subarray((c * 100 + y) * 100, (c * 100 + y + 1) * 100), (c * 112 + y) * 112);
  assert.deepEqual(await logitsOf(lv100, small), await logitsOf(lv, padded));
  await assert.rejects(loadAnyModel(lvPath, { imgSize: 120 }), /image size 120 gives a 8×8 patch grid, pos_embed has 7×7/);
});
