/**
 * Scan orders of the local / cross scans (h, v, wK, flips, middle class token) against
 * independent constructions, their round trips through the native gather/scatter, and the
 * LocalMamba vertical-reverse decision: 'inverse' (default) is the true inverse on every grid;
 * 'official' reproduces LocalMamba's `(h w) → (w h)` rearrange, which differs on non-square grids.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { directionSequence, parseDirection, scanOrder } from '../../lib/models/common/scan-order.js';
import { backboneForward } from '../../lib/models/common/forward.js';
import { loadAnyModel } from '../../lib/models/load.js';
import { LocalVMambaModel } from '../../lib/models/localvmamba/model.js';
import { CpuExecutor } from '../../lib/runtime/cpu-executor.js';
import { Tensor } from '../../lib/tensor/tensor.js';
import { fixture, NO_FIXTURES } from '../helpers.js';

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

/** Windows of K×K over the zero-padded grid, built window by window (an independent construction). */
function windowSequence(K: number, H: number, W: number): number[] {
  const out: number[] = [];
  for (let wr = 0; wr < Math.ceil(H / K); wr++) {
    for (let wc = 0; wc < Math.ceil(W / K); wc++) {
      for (let r = 0; r < K; r++) {
        for (let c = 0; c < K; c++) {
          const row = wr * K + r;
          const col = wc * K + c;
          out.push(row < H && col < W ? row * W + col : -1);
        }
      }
    }
  }
  return out;
}

const GRIDS: [number, number][] = [[1, 1], [2, 3], [3, 5], [4, 4], [7, 7], [5, 9], [14, 14], [16, 20]];

test('direction sequences: h, v (column-major, index c·H + r), wK windows with pads, flips', () => {
  for (const [H, W] of GRIDS) {
    const L = H * W;
    assert.deepEqual([...directionSequence(parseDirection('h'), H, W)], Array.from({ length: L }, (_, t) => t));
    const v: number[] = [];
    for (let c = 0; c < W; c++) for (let r = 0; r < H; r++) v.push(r * W + c);
    assert.deepEqual([...directionSequence(parseDirection('v'), H, W)], v, `v on ${H}×${W}`);
    for (const K of [2, 7]) {
      const w = windowSequence(K, H, W);
      assert.deepEqual([...directionSequence(parseDirection(`w${K}`), H, W)], w, `w${K} on ${H}×${W}`);
      assert.deepEqual([...directionSequence(parseDirection(`w${K}_flip`), H, W)], [...w].reverse(), `w${K}_flip on ${H}×${W}`);
      // Every grid position exactly once, the rest pads.
      const real = w.filter((p) => p >= 0).sort((a, b) => a - b);
      assert.deepEqual(real, Array.from({ length: L }, (_, t) => t));
      assert.equal(w.length, Math.ceil(H / K) * K * Math.ceil(W / K) * K);
    }
    assert.deepEqual([...directionSequence(parseDirection('v_flip'), H, W)], [...v].reverse());
  }
  // The trap sizes of the fixtures: w2 at 7×7 pads to 8×8 (15 pads), w7 at 2×2 is 49 steps for 4 tokens.
  assert.equal(scanOrder('w2', 7, 7).steps, 64);
  assert.equal(scanOrder('w7_flip', 2, 2).steps, 49);
  assert.equal([...scanOrder('w7_flip', 2, 2).gather].filter((p) => p >= 0).length, 4);
  assert.throws(() => parseDirection('d'), /unknown scan direction/);
  assert.throws(() => parseDirection('w0'), /unknown scan direction/);
  assert.throws(() => parseDirection('h_flip_flip'), /unknown scan direction/);
});

test('inverse reverse: gather then scatter through the native ops restores every grid, pads dropped', () => {
  const ops = new CpuExecutor({ quantMode: 'off' });
  const rand = lcg(7);
  for (const [H, W] of GRIDS) {
    for (const name of ['h', 'h_flip', 'v', 'v_flip', 'w2', 'w2_flip', 'w7', 'w7_flip']) {
      for (const clsPos of [null, Math.floor((H * W) / 2)]) {
        const order = scanOrder(name, H, W, { clsPos });
        const B = 2;
        const C = 5;
        const x = ops.alloc(B * order.rows, C);
        for (let i = 0; i < x.data.length; i++) x.data[i] = rand() * 2 - 1;
        const seq = ops.gatherTokens(x, B, order);
        assert.equal(seq.rows, B * order.steps);
        for (let t = 0; t < order.steps; t++) {
          if (order.gather[t]! < 0) assert.equal(seq.data[t * C], 0, `${name} ${H}×${W}: a pad must read zeros`);
        }
        const back = ops.alloc(B * order.rows, C);
        back.data.fill(NaN);
        ops.scatterTokens(seq, B, order, back, false, null);
        assert.deepEqual([...back.data], [...x.data], `${name} on ${H}×${W}${clsPos === null ? '' : ' with a class token'}`);
        ops.endForward();
      }
    }
  }
});

test('middle class token: inserted at step P of every scanned sequence (after flips and pads), back to row P', () => {
  const P = 24; // 7×7 patches
  for (const name of ['h', 'v_flip', 'w2', 'w7_flip']) {
    const plain = scanOrder(name, 7, 7);
    const cls = scanOrder(name, 7, 7, { clsPos: P });
    assert.equal(cls.steps, plain.steps + 1);
    assert.equal(cls.rows, 50);
    assert.equal(cls.gather[P], P);
    assert.equal(cls.scatter[P], P);
    for (let t = 0; t < plain.steps; t++) {
      const p = plain.gather[t]!;
      const want = p < 0 ? -1 : p < P ? p : p + 1;
      assert.equal(cls.gather[t < P ? t : t + 1], want, `${name} step ${t}`);
    }
  }
  assert.equal(scanOrder('h', 7, 7, { clsPos: P }).identity, true);
  assert.equal(scanOrder('w2', 7, 7, { clsPos: P }).steps, 65);
});

/** LocalMamba's official reverse of v / v_flip, written as its code does it: unflip, then `(h w) → (w h)`. */
function officialVerticalReverse(y: number[], H: number, W: number, flip: boolean): number[] {
  const s = flip ? [...y].reverse() : y;
  const out = new Array<number>(H * W);
  for (let r = 0; r < H; r++) for (let c = 0; c < W; c++) out[c * H + r] = s[r * W + c]!;
  return out;
}

test("v-scan reverse: 'official' reproduces LocalMamba's rearrange, equals 'inverse' on square grids only", () => {
  const ops = new CpuExecutor({ quantMode: 'off' });
  for (const [H, W] of GRIDS) {
    for (const name of ['v', 'v_flip']) {
      const inverse = scanOrder(name, H, W);
      const official = scanOrder(name, H, W, { vReverse: 'official' });
      assert.deepEqual([...official.gather], [...inverse.gather], 'the scan itself is the same');
      // Scatter the step indices themselves: out[row] = the step that landed there.
      const y = ops.alloc(H * W, 1);
      for (let t = 0; t < H * W; t++) y.data[t] = t;
      const got = ops.alloc(H * W, 1);
      ops.scatterTokens(y, 1, official, got, false, null);
      assert.deepEqual([...got.data], officialVerticalReverse([...y.data], H, W, name === 'v_flip'), `${name} ${H}×${W}`);
      const same = [...official.scatter].every((v, t) => v === inverse.scatter[t]);
      assert.equal(same, H === W || H === 1 || W === 1, `${name} on ${H}×${W}: the modes agree exactly on square (or 1-wide) grids`);
      ops.endForward();
    }
    // Other directions never differ.
    for (const name of ['h', 'h_flip', 'w2', 'w7_flip']) {
      assert.deepEqual([...scanOrder(name, H, W, { vReverse: 'official' }).scatter], [...scanOrder(name, H, W).scatter]);
    }
  }
});

test("LocalVMamba v-reverse option: same logits on a square input, different on a non-square one", async (t) => {
  const path = fixture('backbones/local_vssm_small.safetensors');
  if (!path) return t.skip(NO_FIXTURES);
  const inverse = await loadAnyModel(path);
  const official = await loadAnyModel(path, { vReverse: 'official' });
  assert.ok(inverse instanceof LocalVMambaModel && official instanceof LocalVMambaModel);
  assert.equal(inverse.config.v_reverse, 'inverse');
  assert.equal(official.config.v_reverse, 'official');
  const rand = lcg(3);
  const image = (H: number, W: number): Tensor<'F32'> => Tensor.f32([1, 3, H, W], Float32Array.from({ length: 3 * H * W }, () => rand() * 2 - 1));
  const ops = new CpuExecutor({ quantMode: 'off' });
  const run = (m: LocalVMambaModel, x: Tensor<'F32'>): Float32Array => {
    const out = ops.toHost(backboneForward(ops, m, x));
    ops.endForward();
    return out;
  };
  const square = image(56, 56);
  assert.deepEqual(run(inverse, square), run(official, square));
  // 56×40: stage grids 14×10, 7×5, 4×3, 2×2 — every stage non-square but the last; blocks use v / v_flip.
  const wide = image(56, 40);
  const a = run(inverse, wide);
  const b = run(official, wide);
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
  assert.ok(diff > 1e-6, `the two reverses must differ on a non-square input (max diff ${diff})`);
  assert.ok(a.every(Number.isFinite) && b.every(Number.isFinite));
});
