import assert from 'node:assert/strict';
import { test } from 'node:test';
import { readSafetensors } from '../../lib/io/safetensors.js';
import { loadVimModel } from '../../lib/models/load.js';
import { vimForward } from '../../lib/models/vim/graph.js';
import { CpuExecutor, type CpuMat } from '../../lib/runtime/cpu-executor.js';
import type { Tensor } from '../../lib/tensor/tensor.js';
import { fixture, flipTokens, NO_FIXTURES, relativeError } from '../helpers.js';

for (const name of ['vim-ti-d2', 'vim-s-d1-stride8']) {
  test(`FP32 forward of ${name} matches the PyTorch reference (logits and every tap)`, async (t) => {
    const modelPath = fixture(`${name}.safetensors`);
    const refPath = fixture(`${name}.ref.safetensors`);
    if (!modelPath || !refPath) return t.skip(NO_FIXTURES);
    const model = await loadVimModel(modelPath);
    const ref = (await readSafetensors(refPath)).tensors;
    const input = ref.get('input') as Tensor<'F32'>;
    const B = input.dim(0);
    const L = model.dims.seqLen;
    const ops = new CpuExecutor();
    const taps = new Map<string, Float32Array>();
    const logits = ops.toHost(vimForward(ops, model, input, (tapName: string, m: CpuMat) => taps.set(tapName, ops.toHost(m))));
    ops.endForward();
    const err = relativeError(logits, ref.get('logits')!.data as Float32Array);
    assert.ok(err < 1e-4, `logits relative error ${err}`);
    let compared = 0;
    for (const [key, value] of ref) {
      if (!key.startsWith('tap.')) continue;
      const tapName = key.slice(4);
      const got = taps.get(tapName);
      assert.ok(got, `the graph produced no tap ${tapName}`);
      const C = value.dim(2);
      const mine = /_b\./.test(tapName) ? flipTokens(got, B, L, C) : got;
      const e = relativeError(mine, value.data as Float32Array);
      assert.ok(e < 1e-4, `${tapName}: relative error ${e}`);
      compared++;
    }
    assert.equal(compared, model.config.depth * 7, 'every layer has 7 taps');
  });
}
