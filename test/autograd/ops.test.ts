// Every differentiable op of the tape, in float64, against central finite differences of the
// loss Σ R ⊙ op(...) (R random): checks the native backward kernels through the bindings and the
// tape's wiring of each gradient to the right input.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { Tape, Var, trainKernels, type FloatArray } from '../../lib/autograd/index.js';
import { fdRelError, randomArray, rng } from './gradcheck.js';

const TOL = 1e-7;

/** loss = Σ R ⊙ f(tape); returns the tape-built loss value. */
function weighted(f: (t: Tape) => Var, R: FloatArray): (t: Tape) => Var {
  return (t) => {
    const y = f(t);
    assert.equal(y.size, R.length, 'weights must match the op output');
    return t.sum(t.mul(y, Var.constant(R, y.shape)));
  };
}

/** Runs backward once, then compares every param's gradient with finite differences. */
function check(params: Var[], build: (t: Tape) => Var): number {
  for (const p of params) p.zeroGrad();
  const t = new Tape();
  const loss = build(t);
  t.backward(loss);
  return fdRelError(params, () => build(new Tape()).item());
}

describe('autograd ops (float64) vs finite differences', () => {
  const r = rng(7);
  const p64 = (n: number, shape: number[], lo = -1, hi = 1) => Var.param(randomArray('f64', n, r, lo, hi), shape);
  const c64 = (n: number, shape: number[], lo = -1, hi = 1) => Var.constant(randomArray('f64', n, r, lo, hi), shape);

  it('matmulNT: gradients to x and w', () => {
    const x = p64(5 * 7, [5, 7]), w = p64(4 * 7, [4, 7]);
    const R = randomArray('f64', 5 * 4, r);
    assert.ok(check([x, w], weighted((t) => t.matmulNT(x, w), R)) < TOL);
  });

  it('sliceCols and concatCols route gradients to the right columns', () => {
    const x = p64(4 * 6, [4, 6]), y = p64(4 * 2, [4, 2]);
    const R = randomArray('f64', 4 * 7, r);
    const f = (t: Tape) => t.concatCols([t.sliceCols(x, 1, 4), y, t.sliceCols(x, 0, 2)]);
    assert.ok(check([x, y], weighted(f, R)) < TOL);
    // Column 4 and 5 of x are unused: exactly zero gradient.
    for (let row = 0; row < 4; row++) assert.equal(x.grad![row * 6 + 5], 0);
  });

  it('add, scale, mul, silu', () => {
    const a = p64(12, [3, 4], -3, 3), b = p64(12, [3, 4]);
    const R = randomArray('f64', 12, r);
    const f = (t: Tape) => t.silu(t.add(t.mul(a, b), t.scale(a, -0.75)));
    assert.ok(check([a, b], weighted(f, R)) < TOL);
  });

  for (const reverse of [false, true]) {
    it(`conv1dSilu (${reverse ? 'reverse' : 'forward'}), sequences of 6 with K = 4`, () => {
      const E = 5, L = 6, B = 2;
      const x = p64(B * L * E, [B * L, E], -2, 2);
      const w = randomArray('f64', E * 4, r), bias = randomArray('f64', E, r, -0.3, 0.3);
      const R = randomArray('f64', B * L * E, r);
      assert.ok(check([x], weighted((t) => t.conv1dSilu(x, L, w, bias, reverse), R)) < TOL);
    });
  }

  for (const [reverse, gated] of [[false, true], [true, true], [true, false]] as const) {
    it(`selectiveScan (${reverse ? 'reverse' : 'forward'}, ${gated ? 'gated' : 'no gate'}): u, delta, B, C, z`, () => {
      const B = 2, L = 5, E = 4, N = 3, rows = B * L;
      const u = p64(rows * E, [rows, E]), delta = p64(rows * E, [rows, E], -2, 1);
      const Bm = p64(rows * N, [rows, N]), Cm = p64(rows * N, [rows, N]);
      const z = gated ? p64(rows * E, [rows, E], -2, 2) : null;
      const A = randomArray('f64', E * N, r, -1.5, -0.1), D = randomArray('f64', E, r), bias = randomArray('f64', E, r, -1, 0.5);
      const R = randomArray('f64', rows * E, r);
      const f = (t: Tape) => t.selectiveScan(u, delta, Bm, Cm, z, { seqLen: L, A, D, deltaBias: bias, reverse });
      const params = [u, delta, Bm, Cm, ...(z ? [z] : [])];
      assert.ok(check(params, weighted(f, R)) < TOL);
    });
  }

  it('bidirectionalScan: (fwd + bwd)/2 with a shared gate, gradients to both directions and z', () => {
    const B = 2, L = 4, E = 3, N = 2, rows = B * L;
    const dir = (reverse: boolean) => ({
      u: p64(rows * E, [rows, E]), delta: p64(rows * E, [rows, E], -2, 1), B: p64(rows * N, [rows, N]), C: p64(rows * N, [rows, N]),
      A: randomArray('f64', E * N, r, -1.5, -0.1), D: randomArray('f64', E, r), deltaBias: randomArray('f64', E, r, -1, 0.5), reverse,
    });
    const f = dir(false), b = dir(true);
    const z = p64(rows * E, [rows, E], -2, 2);
    const R = randomArray('f64', rows * E, r);
    const params = [z, f.u, f.delta, f.B, f.C, b.u, b.delta, b.B, b.C];
    assert.ok(check(params, weighted((t) => t.bidirectionalScan(f, b, z, L), R)) < TOL);
    // Equal to the two single scans combined.
    const t = new Tape();
    const both = t.bidirectionalScan(f, b, z, L);
    const yf = t.selectiveScan(f.u, f.delta, f.B, f.C, z, { seqLen: L, ...f });
    const yb = t.selectiveScan(b.u, b.delta, b.B, b.C, z, { seqLen: L, ...b });
    for (let i = 0; i < both.size; i++) assert.ok(Math.abs(both.data[i]! - 0.5 * (yf.data[i]! + yb.data[i]!)) < 1e-14);
  });

  it('sliceRows splits a weight by output rows', () => {
    const w = p64(6 * 4, [6, 4]), x = c64(3 * 4, [3, 4]);
    const R = randomArray('f64', 3 * 2, r);
    assert.ok(check([w], weighted((t) => t.matmulNT(x, t.sliceRows(w, 2, 4)), R)) < TOL);
    for (let i = 0; i < 8; i++) assert.equal(w.grad![i], 0);
    for (let i = 16; i < 24; i++) assert.equal(w.grad![i], 0);
  });

  it('cosineLoss: gradient to the output only', () => {
    const out = p64(6 * 5, [6, 5]), target = c64(6 * 5, [6, 5]);
    const e = check([out], (t) => t.cosineLoss(out, target));
    assert.ok(e < TOL, `rel err ${e}`);
    assert.equal(target.grad, null);
  });

  it('cosineLoss of identical rows is 0; of opposite rows is 2', () => {
    const a = randomArray('f64', 8, r);
    const neg = Float64Array.from(a, (v) => -v);
    assert.ok(Math.abs(new Tape().cosineLoss(Var.param(a.slice(), [2, 4]), Var.constant(a, [2, 4])).item()) < 1e-15);
    assert.ok(Math.abs(new Tape().cosineLoss(Var.param(a.slice(), [2, 4]), Var.constant(neg, [2, 4])).item() - 2) < 1e-15);
  });

  it('gradients accumulate across backward calls until zeroGrad, and constants get none', () => {
    const x = p64(6, [2, 3]), w = c64(6, [2, 3]);
    const run = () => {
      const t = new Tape();
      t.backward(t.sum(t.matmulNT(x, w)));
    };
    run();
    const once = Float64Array.from(x.grad!);
    run();
    for (let i = 0; i < once.length; i++) assert.ok(Math.abs(x.grad![i]! - 2 * once[i]!) < 1e-12);
    assert.equal(w.grad, null);
    x.zeroGrad();
    assert.equal(x.grad, null);
  });

  it('records nothing when no input needs a gradient', () => {
    const t = new Tape();
    const y = t.matmulNT(c64(6, [2, 3]), c64(6, [2, 3]));
    assert.equal(t.length, 0);
    assert.equal(y.requiresGrad, false);
    assert.throws(() => t.backward(t.sum(y)), /does not depend on any parameter/);
  });
});

describe('weight levels for export', () => {
  it('trainWeightLevels gives the integers the float32 fake quantizer used: levels · s = fake-quant output', () => {
    const r = rng(31);
    const rows = 7, cols = 13;
    const w = randomArray('f32', rows * cols, r) as Float32Array;
    const smooth = randomArray('f32', cols, r, 0.2, 3) as Float32Array;
    const scale = randomArray('f32', rows, r, 0.002, 0.01) as Float32Array;  // clips the larger |w·σ|
    const levels = new Int8Array(rows * cols);
    trainKernels().trainWeightLevels(rows, cols, w, smooth, scale, 127, levels);
    const fq = new Tape().fakeQuantWeight(Var.constant(w, [rows, cols]), Var.constant(smooth), Var.constant(scale), { qmax: 127 });
    let clipped = 0;
    for (let i = 0; i < rows * cols; i++) {
      assert.equal(fq.data[i], Math.fround(levels[i]! * scale[Math.floor(i / cols)]!));
      if (Math.abs(levels[i]!) === 127) clipped++;
    }
    assert.ok(clipped > 0, 'some weights clip');
  });
});
