// Bad arguments are refused with one-line errors naming the function and the argument: by the
// native bindings (they never trust lengths, types or values) and by the tape's ops (shapes).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { Tape, Var, trainKernels } from '../../lib/autograd/index.js';

const k = trainKernels();
const f32 = (n: number, v = 0.5) => new Float32Array(n).fill(v);
const f64 = (n: number, v = 0.5) => new Float64Array(n).fill(v);

function throwsLine(fn: () => unknown, type: ErrorConstructor, re: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof type, `expected ${type.name}, got ${String(e)}`);
    assert.match((e as Error).message, re);
    assert.ok(!(e as Error).message.includes('\n'), 'one line');
    return true;
  });
}

describe('autograd binding validation', () => {
  it('refuses a wrong argument count, mixed precisions and non-float arrays', () => {
    throwsLine(() => (k.trainGemm as unknown as (...a: unknown[]) => void)(false, false, 1, 1, 1), TypeError, /^trainGemm: expected 12 arguments/);
    throwsLine(() => k.trainGemm(false, true, 2, 2, 2, f32(4), 2, f64(4), 2, false, f32(4), 2), TypeError, /trainGemm: 'B' must be a Float32Array/);
    throwsLine(() => k.trainGemm(false, true, 2, 2, 2, new Int32Array(4) as unknown as Float32Array, 2, f32(4), 2, false, f32(4), 2),
      TypeError, /trainGemm: 'A' must be a Float32Array or Float64Array/);
  });

  it('refuses short arrays, bad strides, negative or fractional dimensions', () => {
    throwsLine(() => k.trainGemm(false, true, 3, 2, 2, f32(5), 2, f32(4), 2, false, f32(6), 2), RangeError, /trainGemm: 'A' has 5 elements, needs 6/);
    throwsLine(() => k.trainGemm(false, true, 2, 2, 3, f32(6), 2, f32(6), 3, false, f32(4), 2), RangeError, /row stride of 'A' \(2\) is smaller than its row length \(3\)/);
    throwsLine(() => k.trainConv1d(-1, 2, 2, 4, f32(4), f32(8), null, false, true, f32(4)), RangeError, /trainConv1d: 'B' = -1 is outside/);
    throwsLine(() => k.trainConv1d(1, 2.5, 2, 4, f32(5), f32(8), null, false, true, f32(5)), RangeError, /'L' must be an integer/);
    throwsLine(() => k.trainScan(2, 3, 4, 2, f32(24), f32(24), f32(8), f32(12), f32(11), null, null, null, true, false, 1, false, f32(24)),
      RangeError, /trainScan: 'C' has 11 elements, needs 12/);
  });

  it('refuses outputs that overlap inputs and gradients without their operand', () => {
    const cbuf = f32(32);
    throwsLine(() => k.trainConv1d(1, 4, 4, 4, cbuf.subarray(0, 16), f32(16), null, false, true, cbuf.subarray(8, 24)),
      RangeError, /trainConv1d: 'out' must not overlap 'x'/);
    const u = f32(24), d = f32(24), dy = f32(24);
    throwsLine(() => k.trainScanBackward(2, 3, 4, 2, u, d, f32(8, -1), f32(12), f32(12), null, null, null, true, false, 1, dy,
      null, null, null, null, f32(24), true), RangeError, /'dz' given but 'z' is null/);
    throwsLine(() => k.trainScanBackward(2, 3, 4, 2, u, d, f32(8, -1), f32(12), f32(12), null, null, null, true, false, 1, dy,
      dy, null, null, null, null, true), RangeError, /'du' must not overlap 'dy'/);
    const A = f32(8, -1), BC = f32(12);
    throwsLine(() => k.trainScanBidirBackward(2, 3, 4, 2, u, d, A, BC, BC, null, null, f32(24), f32(24), A, BC, BC, null, null,
      null, true, 0.5, dy, u, null, null, null, f32(24), null, null, null, null, false), RangeError,
    /trainScanBidirBackward: 'du0' must not overlap 'u0'/);
    const du = f32(24);
    throwsLine(() => k.trainScanBidirBackward(2, 3, 4, 2, u, d, A, BC, BC, null, null, f32(24), f32(24), A, BC, BC, null, null,
      null, true, 0.5, dy, du, null, null, null, du, null, null, null, null, false), RangeError,
    /trainScanBidirBackward: 'du0' must not overlap 'du1'/);
    throwsLine(() => k.trainScanBidirBackward(2, 3, 4, 2, u, d, A, BC, BC, null, null, f32(24), f32(24), A, BC, BC, null, null,
      null, true, 0.5, dy, null, null, null, null, null, null, null, null, f32(24), false), RangeError,
    /'dz' given but 'z' is null/);
    throwsLine(() => k.trainCopyCols(4, 3, f32(12), 3, 1, f32(12), 3, 0, false), RangeError,
      /trainCopyCols: row stride of 'src' \(3\) is smaller than its row length \(4\)/);
    throwsLine(() => k.trainCopyCols(4, 3, f32(15), 4, 1, f32(12), 3, 0, false), RangeError, /trainCopyCols: 'src' has 15 elements, needs 16/);
    const buf = f32(40);
    throwsLine(() => k.trainCopyCols(4, 3, buf.subarray(0, 16), 4, 0, buf.subarray(12, 24), 3, 0, false), RangeError,
      /trainCopyCols: 'dst' must not overlap 'src'/);
    throwsLine(() => k.trainCosineLoss(2, 3, f32(6), f32(5), 1e-8, new Float64Array(6)), RangeError, /trainCosineLoss: 'target' has 5 elements/);
    throwsLine(() => k.trainCosineLoss(2, 3, f32(6), f32(6), 1e-8, new Float64Array(5)), RangeError, /'stats' has 5 elements, needs 6/);
  });

  it('refuses quantizer parameters out of range', () => {
    const x = f32(6), out = f32(6);
    throwsLine(() => k.trainFakeQuantAct(2, 3, 2, false, x, null, f32(2, 0.1), Int32Array.of(0, 256), 255, out, null),
      RangeError, /trainFakeQuantAct: 'zero'\[1\] = 256 is outside \[0, qmax\]/);
    throwsLine(() => k.trainFakeQuantAct(2, 3, 2, false, x, null, Float32Array.of(0.1, -0.1), Int32Array.of(0, 1), 255, out, null),
      RangeError, /'scale'\[1\] = -0.1\d* must be positive and finite/);
    throwsLine(() => k.trainFakeQuantAct(2, 3, 2, false, x, Float32Array.of(1, NaN, 1), f32(2, 0.1), Int32Array.of(0, 1), 255, out, null),
      RangeError, /'smooth'\[1\] = nan must be positive and finite/);
    throwsLine(() => k.trainFakeQuantWeight(2, 3, x, null, f32(2, 0.1), 128, out), RangeError, /trainFakeQuantWeight: 'qmax' = 128 is outside \[1, 127\]/);
    throwsLine(() => k.trainFakeQuantAct(2, 3, 0, false, x, null, f32(2, 0.1), Int32Array.of(0, 1), 255, out, null), RangeError, /'period' = 0 is outside/);
    throwsLine(() => k.trainFakeQuantAct(2, 3, 2, false, x, null, f32(2, 0.1), Int32Array.of(0, 1), 1023, out, new Uint8Array(6)),
      RangeError, /trainFakeQuantAct: 'levels' needs qmax ≤ 255, got 1023/);
    throwsLine(() => k.trainFakeQuantAct(2, 3, 2, false, x, null, f32(2, 0.1), Int32Array.of(0, 1), 255, out, new Uint8Array(5)),
      RangeError, /'levels' has 5 elements, needs 6/);
    const lv = new Uint8Array(6), wl = new Int8Array(6);
    throwsLine(() => k.trainGemmInt8(2, 2, 3, lv, wl, 2, false, f32(2), Int32Array.of(0, 300), f32(2), f32(4), false), RangeError,
      /trainGemmInt8: 'aZero'\[1\] is outside \[0, 255\]/);
    throwsLine(() => k.trainGemmInt8(2, 2, 3, lv, wl, 2, false, f32(1), Int32Array.of(0, 3), f32(2), f32(4), false), RangeError,
      /trainGemmInt8: 'aScale' has 1 elements, needs 2/);
    throwsLine(() => k.trainGemmInt8(2, 2, 40000, lv, wl, 2, false, f32(2), Int32Array.of(0, 3), f32(2), f32(4), false), RangeError,
      /trainGemmInt8: 'K' = 40000 is outside/);
  });
});

describe('autograd op shape checks', () => {
  const t = new Tape();
  it('matmulNT, sliceCols, selectiveScan, fakeQuantAct and cosineLoss name the mismatch', () => {
    throwsLine(() => t.matmulNT(Var.param(f32(6), [2, 3]), Var.constant(f32(8), [2, 4])), RangeError, /autograd\.matmulNT: x has 3 columns but w has 4/);
    throwsLine(() => t.sliceCols(Var.param(f32(6), [2, 3]), 2, 4), RangeError, /autograd\.sliceCols: columns \[2, 4\) are not inside \[0, 3\)/);
    const v = (r: number, c: number) => Var.param(f32(r * c), [r, c]);
    throwsLine(() => t.selectiveScan(v(6, 4), v(6, 4), v(6, 2), v(6, 2), null, { seqLen: 4, A: f32(8) }), RangeError,
      /autograd\.selectiveScan: 6 rows are not a whole number of sequences of 4/);
    throwsLine(() => t.selectiveScan(v(6, 4), v(6, 4), v(6, 2), v(6, 2), null, { seqLen: 3, A: f64(8) }), TypeError,
      /autograd\.selectiveScan: 'A' must be a Float32Array like the operands/);
    throwsLine(() => t.fakeQuantAct(v(4, 3), null, Var.param(f32(3, 0.1)), { zero: new Int32Array(2), qmax: 255, period: 2 }), RangeError,
      /autograd\.fakeQuantAct: 'scale' must have shape \[2\], got \[3\]/);
    throwsLine(() => t.cosineLoss(v(2, 3), Var.constant(f32(4), [2, 2])), RangeError, /autograd\.cosineLoss: target is \[2, 2\], out is \[2, 3\]/);
    throwsLine(() => t.add(Var.param(f32(4), [2, 2]), Var.param(f64(4), [2, 2])), TypeError, /autograd\.add: operands mix float32 and float64/);
  });
});
