/**
 * FP32 forward of LocalVim, VMamba v2 and LocalVMamba against the float64 references computed
 * with the official code (../shared/fixtures/backbones): logits and every tap within
 * 1e-5 × max|ref| (the fp32 floor of the official code itself is ≤ 1.6e-6).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { readSafetensors } from '../../lib/io/safetensors.js';
import { backboneForward } from '../../lib/models/common/forward.js';
import { loadAnyModel, type AnyModel } from '../../lib/models/load.js';
import type { BackboneOps } from '../../lib/models/ops.js';
import { CpuExecutor, type CpuMat } from '../../lib/runtime/cpu-executor.js';
import type { Tensor } from '../../lib/tensor/tensor.js';
import { VimModel } from '../../lib/models/vim/model.js';
import { fixture, NO_FIXTURES } from '../helpers.js';

/** The CPU executor implements every backbone op (a compile-time check as much as a run-time one). */
const newOps = (): BackboneOps<CpuMat> => new CpuExecutor({ quantMode: 'off' });

/** max|a − b| / max|b|. */
export function maxRelError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, 'length mismatch');
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i]! - b[i]!));
    den = Math.max(den, Math.abs(b[i]!));
  }
  return num / (den || 1e-300);
}

/** [B·L, C] token-major → [B, C, L] (the reference's channel-first and scan-sequence layouts). */
export function toChannelFirst(x: Float32Array, B: number, L: number, C: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let b = 0; b < B; b++) for (let t = 0; t < L; t++) for (let c = 0; c < C; c++) out[(b * C + c) * L + t] = x[(b * L + t) * C + c]!;
  return out;
}

/** Per-direction sequences [B·L_k, E] → the reference's (B, K·E, Lmax), zero-padded at the end. */
function stackDirections(parts: Float32Array[], lens: number[], B: number, E: number, Lmax: number): Float32Array {
  const K = parts.length;
  const out = new Float32Array(B * K * E * Lmax);
  parts.forEach((p, k) => {
    const L = lens[k]!;
    for (let b = 0; b < B; b++) for (let t = 0; t < L; t++) for (let e = 0; e < E; e++) out[(b * K * E + k * E + e) * Lmax + t] = p[(b * L + t) * E + e]!;
  });
  return out;
}

export interface ForwardRun {
  model: AnyModel;
  logits: Float32Array;
  taps: Map<string, Float32Array>;
  ref: ReadonlyMap<string, Tensor>;
}

export async function runFixture(name: string): Promise<ForwardRun | null> {
  const modelPath = fixture(`backbones/${name}.safetensors`);
  const refPath = fixture(`backbones/${name}.ref.safetensors`);
  if (!modelPath || !refPath) return null;
  const model = await loadAnyModel(modelPath);
  const ref = (await readSafetensors(refPath)).tensors;
  const input = ref.get('input') as Tensor<'F32'>;
  const ops = newOps();
  const taps = new Map<string, Float32Array>();
  if (model instanceof VimModel) throw new Error(`${name} loaded as a Vim`);
  const logits = ops.toHost(backboneForward(ops, model, input, (tapName, m) => {
    assert.ok(!taps.has(tapName), `tap ${tapName} emitted twice`);
    taps.set(tapName, ops.toHost(m));
  }));
  ops.endForward();
  return { model, logits, taps, ref };
}

const TOL = 1e-5;

/** The graph's tap for a reference tap, in the reference's layout (null: the graph has none). */
function mineFor(run: ForwardRun, key: string, ref: Tensor): Float32Array | null {
  const name = key.slice('tap.'.length);
  const { taps } = run;
  const B = ref.dim(0);
  const arch = run.model instanceof VimModel ? 'vim' : run.model.arch;
  const seq = /^(.*\.op)\.(scan_xs|scan_ys|scan_u|scan_y)$/.exec(name);
  if (seq) {
    const parts: Float32Array[] = [];
    for (let k = 0; taps.has(`${seq[1]}.${seq[2]}.${k}`); k++) parts.push(taps.get(`${seq[1]}.${seq[2]}.${k}`)!);
    if (parts.length === 0) return null;
    const E = ref.dim(1) / parts.length;
    const lens = parts.map((p) => p.length / (B * E));
    return stackDirections(parts, lens, B, E, ref.dim(2));
  }
  const mine = taps.get(name);
  if (!mine) return null;
  if (arch === 'vmamba' && ref.rank === 4) return toChannelFirst(mine, B, ref.dim(2) * ref.dim(3), ref.dim(1));
  if (arch === 'localvmamba' && name.endsWith('.op.conv2d')) return toChannelFirst(mine, B, ref.dim(2) * ref.dim(3), ref.dim(1));
  if (arch === 'localvim' && /scan_out_z\.\d+$/.test(name)) return toChannelFirst(mine, B, ref.dim(2), ref.dim(1));
  return mine;
}

const FIXTURES: { name: string; taps: number }[] = [
  { name: 'vmamba_v2v_small', taps: 19 },
  { name: 'vmamba_v2v_small_ds4', taps: 18 },
  { name: 'local_vim_small', taps: 23 },
  { name: 'local_vim_small_112pad', taps: 19 },
  { name: 'local_vim_small_midcls_112pad', taps: 19 },
  { name: 'local_vssm_small', taps: 24 },
];

for (const { name, taps: tapCount } of FIXTURES) {
  test(`FP32 forward of ${name} matches the official float64 reference (logits and every tap, 1e-5 × max|ref|)`, async (t) => {
    const run = await runFixture(name);
    if (!run) return t.skip(NO_FIXTURES);
    const refLogits = run.ref.get('logits')!;
    const e = maxRelError(run.logits, refLogits.data as Float32Array);
    assert.ok(e < TOL, `logits: max error ${e} × max|ref|`);
    let compared = 0;
    const worst: string[] = [];
    for (const [key, value] of run.ref) {
      if (!key.startsWith('tap.')) continue;
      const mine = mineFor(run, key, value);
      assert.ok(mine, `the graph produced no tap for ${key}`);
      const err = maxRelError(mine, value.data as Float32Array);
      assert.ok(err < TOL, `${key}: max error ${err} × max|ref|`);
      worst.push(`${key.slice(4)} ${err.toExponential(1)}`);
      compared++;
    }
    assert.equal(compared, tapCount, `${name} has ${tapCount} reference taps`);
    t.diagnostic(`logits ${e.toExponential(2)}; taps: ${worst.join(', ')}`);
  });
}
