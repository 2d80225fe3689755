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
    const buf = f32(32);
    throwsLine(() => k.trainConv1d(1, 4, 4, 4, buf.subarray(0, 16), f32(16), null, false, true, buf.subarray(8, 24)),
      RangeError, /trainConv1d: 'out' must not overlap 'x'/);
    const u = f32(24), d = f32(24), dy = f32(24);
    throwsLine(() => k.trainScanBackward(2, 3, 4, 2, u, d, f32(8, -1), f32(12), f32(12), null, null, null, true, false, 1, dy,
      null, null, null, null, f32(24)), RangeError, /'dz' given but 'z' is null/);
    throwsLine(() => k.trainScanBackward(2, 3, 4, 2, u, d, f32(8, -1), f32(12), f32(12), null, null, null, true, false, 1, dy,
      dy, null, null, null, null), RangeError, /'du' must not overlap 'dy'/);
  });

  it('refuses quantizer parameters out of range', () => {
    const x = f32(6), out = f32(6);
    throwsLine(() => k.trainFakeQuantAct(2, 3, 2, false, x, null, f32(2, 0.1), Int32Array.of(0, 256), 255, out),
      RangeError, /trainFakeQuantAct: 'zero'\[1\] = 256 is outside \[0, qmax\]/);
    throwsLine(() => k.trainFakeQuantAct(2, 3, 2, false, x, null, Float32Array.of(0.1, -0.1), Int32Array.of(0, 1), 255, out),
      RangeError, /'scale'\[1\] = -0.1\d* must be positive and finite/);
    throwsLine(() => k.trainFakeQuantAct(2, 3, 2, false, x, Float32Array.of(1, NaN, 1), f32(2, 0.1), Int32Array.of(0, 1), 255, out),
      RangeError, /'smooth'\[1\] = nan must be positive and finite/);
    throwsLine(() => k.trainFakeQuantWeight(2, 3, x, null, f32(2, 0.1), 128, out), RangeError, /trainFakeQuantWeight: 'qmax' = 128 is outside \[1, 127\]/);
    throwsLine(() => k.trainFakeQuantAct(2, 3, 0, false, x, null, f32(2, 0.1), Int32Array.of(0, 1), 255, out), RangeError, /'period' = 0 is outside/);
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
