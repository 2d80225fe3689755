// Every differentiable op of the tape, in float64, against central finite differences of the
// loss Σ R ⊙ op(...) (R random): checks the native backward kernels through the bindings and the
// tape's wiring of each gradient to the right input.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { Tape, TapeExecutor, Var, tapeMat, trainKernels, type FloatArray } from '../../lib/autograd/index.js';
import type { LinearSite } from '../../lib/models/ops.js';
import { Tensor } from '../../lib/tensor/tensor.js';
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

describe('INT8 product of fake-quantized float32 operands', () => {
  const M = 2 * 7, K = 37, N = 11, period = 7;
  function operands(seed: number) {
    const r = rng(seed);
    const x = Var.constant(randomArray('f32', M * K, r, -2, 3), [M, K]);
    const w = Var.constant(randomArray('f32', N * K, r, -0.5, 0.5), [N, K]);
    const smooth = Var.param(randomArray('f32', K, r, 0.5, 2));
    const ascale = Var.param(randomArray('f32', period, r, 0.01, 0.03));
    const wscale = Var.param(randomArray('f32', N, r, 0.002, 0.005));
    const zero = Int32Array.from({ length: period }, (_, i) => 100 + 9 * i);
    return { x, w, smooth, ascale, wscale, zero };
  }

  for (const reversePeriod of [false, true]) {
    it(`equals the float product of the fake-quantized values${reversePeriod ? ' (reversed token order)' : ''}, and is the int8 kernel's`, () => {
      const o = operands(reversePeriod ? 41 : 40);
      const t = new Tape();
      const aq = t.fakeQuantAct(o.x, o.smooth, o.ascale, { zero: o.zero, qmax: 255, period, reversePeriod });
      const wq = t.fakeQuantWeight(o.w, o.smooth, o.wscale, { qmax: 127 });
      const y = t.matmulNT(aq, wq);
      let worst = 0, scale = 0;
      for (let m = 0; m < M; m++) {
        for (let n = 0; n < N; n++) {
          let ref = 0;
          for (let k = 0; k < K; k++) ref += aq.data[m * K + k]! * wq.data[n * K + k]!;
          worst = Math.max(worst, Math.abs(y.data[m * N + n]! - ref));
          scale = Math.max(scale, Math.abs(ref));
        }
      }
      assert.ok(worst / scale < 1e-5, `rel err ${worst / scale}`);
      // The same bits as the int8 kernel on the levels the quantizers produce.
      const kk = trainKernels();
      const al = new Uint8Array(M * K), scratch = new Float32Array(M * K), wl = new Int8Array(N * K);
      kk.trainFakeQuantAct(M, K, period, reversePeriod, o.x.data, o.smooth.data, o.ascale.data, o.zero, 255, scratch, al);
      kk.trainWeightLevels(N, K, o.w.data as Float32Array, o.smooth.data as Float32Array, o.wscale.data as Float32Array, 127, wl);
      const direct = new Float32Array(M * N);
      kk.trainGemmInt8(M, N, K, al, wl, period, reversePeriod, o.ascale.data as Float32Array, o.zero, o.wscale.data as Float32Array, direct, false);
      assert.deepEqual(Array.from(y.data), Array.from(direct));
      // Rows of the weight (sliceRows) keep their levels: the slice's product is those columns.
      const part = t.matmulNT(aq, t.sliceRows(wq, 3, 9));
      for (let m = 0; m < M; m++) for (let n = 3; n < 9; n++) assert.equal(part.data[m * 6 + n - 3], y.data[m * N + n]);
    });
  }

  it('gradients are those of the float product (float32 against float64)', () => {
    const grads = (precision: 'f32' | 'f64') => {
      const o = operands(42);
      const cast = (v: Var, param: boolean) => (precision === 'f32' ? v : new Var(Float64Array.from(v.data), v.shape, param));
      const x = cast(o.x, false), w = cast(o.w, false);
      const smooth = cast(o.smooth, true), ascale = cast(o.ascale, true), wscale = cast(o.wscale, true);
      const t = new Tape();
      const y = t.matmulNT(t.fakeQuantAct(x, smooth, ascale, { zero: o.zero, qmax: 255, period }), t.fakeQuantWeight(w, smooth, wscale, { qmax: 127 }));
      const R = randomArray(precision, M * N, rng(5));
      t.backward(t.sum(t.mul(y, Var.constant(R, y.shape))));
      return [smooth, ascale, wscale].map((v) => Array.from(v.grad!));
    };
    const g32 = grads('f32'), g64 = grads('f64');
    g32.forEach((g, i) => {
      const ref = g64[i]!;
      const scale = Math.max(...ref.map(Math.abs));
      const err = Math.max(...g.map((v, j) => Math.abs(v - ref[j]!)));
      assert.ok(scale > 0 && err / scale < 1e-4, `param ${i}: rel err ${err / scale}`);
    });
  });
});

describe('float32 fast paths agree with their plain forms', () => {
  it('the bidirectional scan (one native pass) equals the two directions combined', () => {
    const r = rng(51);
    const B = 3, L = 11, E = 37, N = 16, rows = B * L;
    const p32 = (n: number, shape: number[], lo = -1, hi = 1) => Var.param(randomArray('f32', n, r, lo, hi), shape);
    const dir = (reverse: boolean) => ({
      u: p32(rows * E, [rows, E]), delta: p32(rows * E, [rows, E], -2, 1), B: p32(rows * N, [rows, N]), C: p32(rows * N, [rows, N]),
      A: randomArray('f32', E * N, r, -3, -0.1), D: randomArray('f32', E, r), deltaBias: randomArray('f32', E, r, -1, 0.5), reverse,
    });
    const f = dir(false), b = dir(true);
    const z = p32(rows * E, [rows, E], -2, 2);
    const t = new Tape();
    const both = t.bidirectionalScan(f, b, z, L);
    const yf = t.selectiveScan(f.u, f.delta, f.B, f.C, z, { seqLen: L, ...f });
    const yb = t.selectiveScan(b.u, b.delta, b.B, b.C, z, { seqLen: L, ...b });
    let worst = 0, scale = 0;
    for (let i = 0; i < both.size; i++) {
      const ref = 0.5 * (yf.data[i]! + yb.data[i]!);
      worst = Math.max(worst, Math.abs(both.data[i]! - ref));
      scale = Math.max(scale, Math.abs(ref));
    }
    assert.ok(worst / scale < 1e-6, `rel err ${worst / scale}`);
  });

  it('a linear read only through wide column slices (split GEMMs) equals the sliced whole output, gradients too', () => {
    const r = rng(52);
    const M = 10, K = 7, N = 2 * 70;
    const weight = new Tensor('F32', [N, K], randomArray('f32', N * K, r) as Float32Array);
    const site: LinearSite = { name: 'in_proj', weight, bias: null, inFeatures: K, outFeatures: N, reversedTokens: false, quant: null };
    const run = (split: boolean) => {
      const x = Var.param(randomArray('f32', M * K, rng(53)), [M, K]);
      const tape = new Tape();
      const ops = new TapeExecutor(tape);
      const xz = ops.linear({ fp: tapeMat(x) }, site);
      if (!split) void xz.v;  // read whole: the slices then copy columns
      const a = ops.colSlice(xz, 0, N / 2).v, c = ops.colSlice(xz, N / 2, N).v;
      const R1 = randomArray('f32', a.size, rng(54)), R2 = randomArray('f32', c.size, rng(55));
      const loss = tape.add(tape.sum(tape.mul(a, Var.constant(R1, a.shape))), tape.sum(tape.mul(c, Var.constant(R2, c.shape))));
      tape.backward(loss);
      return { a: Array.from(a.data), c: Array.from(c.data), g: Array.from(x.grad!) };
    };
    const split = run(true), whole = run(false);
    assert.deepEqual(split.a, whole.a);
    assert.deepEqual(split.c, whole.c);
    for (let i = 0; i < split.g.length; i++) assert.ok(Math.abs(split.g[i]! - whole.g[i]!) < 1e-5 * Math.max(1, Math.abs(whole.g[i]!)));
  });
});
