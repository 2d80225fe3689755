/**
 * The released backbone sizes with random weights (lib/models/common/random.ts): their shapes are
 * exactly the real models' key lists, config inference gives back the same config, and they run
 * through ModelRunner to the same logits as the graph itself.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { backboneConfig, detectFamily, type BackboneFamily } from '../../lib/models/common/family.js';
import { backboneForward } from '../../lib/models/common/forward.js';
import { BACKBONE_ARCHS, backboneTensorShapes, randomBackboneImages, randomBackboneModel, type BackboneArch } from '../../lib/models/common/random.js';
import { CpuExecutor } from '../../lib/runtime/cpu-executor.js';
import { describeModel } from '../../lib/runtime/describe.js';
import { ModelRunner } from '../../lib/runtime/forward.js';
import { fixture, NO_FIXTURES } from '../helpers.js';

interface KeysEntry { n_params: number | null; keys: [string, number[], string][] }

test('random released-size models: the real key lists, shapes and parameter counts; config inference round-trips', (t) => {
  const path = fixture('backbones/KEYS.json');
  if (!path) return t.skip(NO_FIXTURES);
  const keys = JSON.parse(readFileSync(path, 'utf8')) as Record<string, KeysEntry>;
  for (const arch of Object.keys(BACKBONE_ARCHS) as BackboneArch[]) {
    const real = keys[`${arch} (real)`];
    assert.ok(real, `${arch}: in KEYS.json`);
    const config = BACKBONE_ARCHS[arch]();
    const shapes = backboneTensorShapes(config);
    assert.deepEqual([...shapes].map(([k, s]) => [k, s]).sort(), real.keys.map(([k, s]) => [k, s]).sort(), arch);
    const family = detectFamily(shapes) as BackboneFamily;
    assert.equal(family, config.arch);
    assert.deepEqual(backboneConfig(family, shapes, arch, null), config, `${arch}: config inference gives the same config`);
    const model = randomBackboneModel(arch, 3);
    assert.equal(model.parameterCount, real.n_params, arch);
    for (const [name, t] of model.tensors) assert.ok(t.data.every(Number.isFinite), `${arch} ${name}`);
  }
});

test('random released-size models run through ModelRunner (fp32, CPU) to the graph\'s logits; seeds matter', () => {
  for (const arch of Object.keys(BACKBONE_ARCHS) as BackboneArch[]) {
    const model = randomBackboneModel(arch, 0);
    const images = randomBackboneImages(model, 1, 7);
    const runner = new ModelRunner(model);
    const logits = runner.forward(images);
    assert.deepEqual(logits.shape, [1, 1000]);
    assert.ok(logits.data.every(Number.isFinite), arch);
    const spread = Math.max(...logits.data) - Math.min(...logits.data);
    assert.ok(spread > 1e-3, `${arch}: logits spread ${spread}`);
    const ops = new CpuExecutor({ quantMode: 'off' });
    assert.deepEqual(logits.data, ops.toHost(backboneForward(ops, model, images)), arch);
    ops.endForward();
    const other = new ModelRunner(randomBackboneModel(arch, 1)).forward(images);
    assert.notDeepEqual(other.data, logits.data, `${arch}: another seed, other weights`);
    const info = describeModel(model, runner);
    assert.equal(info.arch, model.config.arch);
    assert.equal(info.precision, 'fp32');
    assert.equal(info.seqLen, model.config.arch === 'localvim' ? 196 + (model.config.cls_token ? 1 : 0) : 56 * 56);
  }
});
