// A tiny random Vim mixer on the tape: float64 gradients against finite differences (FP mixer;
// fake-quant mixer against its frozen-level surrogate, which is what the straight-through
// estimator differentiates), and float32 against float64.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { BufferPool, Tape, Var, type ActQuantOptions, type FloatArray, type WeightQuantOptions } from '../../lib/autograd/index.js';
import { vimMixerOnTape } from '../../lib/autograd/vim-mixer.js';
import {
  calibrateActivations, fdRelError, LINEARS, maxRelDiff, mixerParams, quantParams, quantVars, randomArray, randomMixer,
  randomQuant, rng, type TinyMixerDims, type TinyQuant,
} from './gradcheck.js';

const DIMS: TinyMixerDims = { batch: 2, seqLen: 5, D: 6, E: 12, N: 3, R: 2, K: 4 };
const ROWS = DIMS.batch * DIMS.seqLen;

function roundHalfEven(v: number): number {
  const f = Math.floor(v), d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/**
 * A tape whose quantizers are the straight-through surrogate: each element's rounding residual
 * c = round(v) − v and its clamp region are frozen at the first (recording) pass, then later
 * passes evaluate inside: a + c·s, clamped: (bound − z)·s. Its exact derivative is the STE
 * gradient at the recorded point, so finite differences of it check the quantizer backward.
 */
class SurrogateTape extends Tape {
  private call = 0;
  constructor(private readonly frozen: { c: Float64Array; region: Int8Array }[], private readonly recording: boolean) {
    super();
  }

  private freeze(n: number): { c: Float64Array; region: Int8Array } {
    if (this.recording) this.frozen.push({ c: new Float64Array(n), region: new Int8Array(n) });
    const f = this.frozen[this.call++];
    if (!f) throw new Error('surrogate: more quantizer calls than recorded');
    return f;
  }

  override fakeQuantAct(x: Var, smooth: Var | null, scale: Var, o: ActQuantOptions): Var {
    const [rows, cols] = x.shape as [number, number];
    const f = this.freeze(rows * cols);
    const out = new Float64Array(rows * cols);
    for (let r = 0; r < rows; r++) {
      const t = r % o.period;
      const p = o.reversePeriod ? o.period - 1 - t : t;
      const s = scale.data[p]!, z = o.zero[p]!, inv = 1 / s;
      for (let j = 0; j < cols; j++) {
        const i = r * cols + j;
        const a = x.data[i]! * (smooth ? 1 / smooth.data[j]! : 1);
        if (this.recording) {
          const v = a * inv, rv = roundHalfEven(v), level = rv + z;
          f.region[i] = level < 0 ? -1 : level > o.qmax ? 1 : 0;
          f.c[i] = rv - v;
        }
        out[i] = f.region[i]! < 0 ? (0 - z) * s : f.region[i]! > 0 ? (o.qmax - z) * s : a + f.c[i]! * s;
      }
    }
    return Var.constant(out, [rows, cols]);
  }

  override fakeQuantWeight(w: Var, smooth: Var | null, scale: Var, o: WeightQuantOptions): Var {
    const [rows, cols] = w.shape as [number, number];
    const f = this.freeze(rows * cols);
    const out = new Float64Array(rows * cols);
    for (let r = 0; r < rows; r++) {
      const s = scale.data[r]!;
      for (let k = 0; k < cols; k++) {
        const i = r * cols + k;
        const ws = w.data[i]! * (smooth ? smooth.data[k]! : 1);
        if (this.recording) {
          const v = ws * (1 / s), rv = roundHalfEven(v);
          f.region[i] = rv < -o.qmax ? -1 : rv > o.qmax ? 1 : 0;
          f.c[i] = rv - v;
        }
        out[i] = f.region[i]! !== 0 ? f.region[i]! * o.qmax * s : ws + f.c[i]! * s;
      }
    }
    return Var.constant(out, [rows, cols]);
  }
}

describe('Vim mixer on the tape', () => {
  const mixer = randomMixer(DIMS, 1);
  const r = rng(2);
  const input = randomArray('f64', ROWS * DIMS.D, r);
  const target = randomArray('f64', ROWS * DIMS.D, r);
  const calibrated = (wbits: number, abits: number): TinyQuant => {
    const q = randomQuant(mixer, wbits, abits, 3);
    calibrateActivations(mixer, q, input);
    return q;
  };

  it('FP mixer (float64): gradients of the input and all six weights match finite differences', () => {
    const p = mixerParams(mixer, 'f64', true);
    const x = Var.param(input.slice(), [ROWS, DIMS.D]);
    const t = Var.constant(target, [ROWS, DIMS.D]);
    const loss = () => {
      const tape = new Tape();
      return tape.cosineLoss(vimMixerOnTape(tape, x, p), t);
    };
    const tape = new Tape();
    const l = tape.cosineLoss(vimMixerOnTape(tape, x, p), t);
    tape.backward(l);
    const params = [x, ...LINEARS.map((n) => p.weights[n])];
    const e = fdRelError(params, () => loss().item());
    assert.ok(e < 1e-6, `rel err ${e}`);
  });

  for (const [wbits, abits] of [[8, 8], [4, 4]] as const) {
    it(`W${wbits}A${abits} fake-quant mixer (float64): σ, weight and activation step gradients match the surrogate's finite differences`, () => {
      const p = mixerParams(mixer, 'f64');
      const qv = quantVars(calibrated(wbits, abits), 'f64', DIMS.seqLen, true);
      const x = Var.param(input.slice(), [ROWS, DIMS.D]);
      const t = Var.constant(target, [ROWS, DIMS.D]);
      const tape = new Tape();
      const real = tape.cosineLoss(vimMixerOnTape(tape, x, p, qv), t);
      tape.backward(real);
      // The STE gradient must not be trivially zero anywhere: every linear's σ, s_w and s_a move the loss.
      for (const v of quantParams(qv)) assert.ok(v.grad && v.grad.some((g) => g !== 0), 'a parameter got no gradient');

      const frozen: { c: Float64Array; region: Int8Array }[] = [];
      const recorded = new SurrogateTape(frozen, true);
      const surrogateAt0 = recorded.cosineLoss(vimMixerOnTape(recorded, x, p, qv), t).item();
      assert.ok(Math.abs(surrogateAt0 - real.item()) < 1e-12, 'the surrogate equals the quantized mixer at the recorded point');
      let clippedLow = 0, clippedHigh = 0;
      for (const f of frozen) for (const g of f.region) g < 0 ? clippedLow++ : g > 0 ? clippedHigh++ : 0;
      assert.ok(clippedLow > 0 && clippedHigh > 0, 'the test exercises clipping on both sides');

      const surrogate = () => {
        const s = new SurrogateTape(frozen, false);
        return s.cosineLoss(vimMixerOnTape(s, x, p, qv), t).item();
      };
      const e = fdRelError([x, ...quantParams(qv)], surrogate);
      assert.ok(e < 1e-6, `rel err ${e}`);
    });
  }

  it('a pooled tape reuses its arrays across steps with identical losses and gradients', () => {
    const p = mixerParams(mixer, 'f32');
    const qv = quantVars(calibrated(8, 8), 'f32', DIMS.seqLen, true);
    const x = Var.constant(Float32Array.from(input), [ROWS, DIMS.D]);
    const t = Var.constant(Float32Array.from(target), [ROWS, DIMS.D]);
    const step = (pool?: BufferPool) => {
      for (const v of quantParams(qv)) v.zeroGrad();
      const tape = new Tape({ pool });
      const loss = tape.cosineLoss(vimMixerOnTape(tape, x, p, qv), t);
      tape.backward(loss);
      const value = loss.item();
      tape.release();
      return { value, grads: quantParams(qv).map((v) => Float32Array.from(v.grad!)) };
    };
    const plain = step();
    const pool = new BufferPool();
    for (let i = 0; i < 3; i++) {
      const pooled = step(pool);
      assert.equal(pooled.value, plain.value);
      pooled.grads.forEach((g, j) => assert.deepEqual(g, plain.grads[j]));
    }
  });

  it('float32 agrees with float64: FP mixer tightly, W8A8 fake-quant mixer closely', () => {
    const run = (precision: 'f32' | 'f64', quant: boolean) => {
      const p = mixerParams(mixer, precision);
      const qv = quant ? quantVars(calibrated(8, 8), precision, DIMS.seqLen, true) : undefined;
      const x = Var.param(precision === 'f64' ? input.slice() : Float32Array.from(input), [ROWS, DIMS.D]);
      const t = Var.constant(precision === 'f64' ? target : Float32Array.from(target), [ROWS, DIMS.D]);
      const tape = new Tape();
      const loss = tape.cosineLoss(vimMixerOnTape(tape, x, p, qv), t);
      tape.backward(loss);
      const grads: FloatArray[] = [x.grad!, ...(qv ? quantParams(qv).map((v) => v.grad!) : [])];
      return { loss: loss.item(), grads };
    };
    const fp32 = run('f32', false), fp64 = run('f64', false);
    assert.ok(Math.abs(fp32.loss - fp64.loss) < 1e-6 * Math.max(1, fp64.loss), `loss ${fp32.loss} vs ${fp64.loss}`);
    assert.ok(maxRelDiff(fp32.grads[0]!, fp64.grads[0]!) < 1e-4, 'FP input gradient');
    const q32 = run('f32', true), q64 = run('f64', true);
    assert.ok(Math.abs(q32.loss - q64.loss) < 1e-4 * Math.max(1, q64.loss), `quantized loss ${q32.loss} vs ${q64.loss}`);
    q32.grads.forEach((g, i) => {
      const e = maxRelDiff(g, q64.grads[i]!);
      assert.ok(e < 2e-2, `quantized gradient ${i}: rel diff ${e}`);
    });
  });
});

describe('Vim mixer on the tape at Vim-like widths', () => {
  // E ≥ 64: in_proj's x and z are GEMMs of their own; K ≥ 16: INT8 products in float32;
  // N = 16: the scan backward's folded dB and dC; two directions: the fused bidirectional passes.
  const dims: TinyMixerDims = { batch: 2, seqLen: 9, D: 24, E: 64, N: 16, R: 4, K: 4 };
  const rows = dims.batch * dims.seqLen;
  const mixer = randomMixer(dims, 11);
  const r = rng(12);
  const input = randomArray('f64', rows * dims.D, r);
  const target = randomArray('f64', rows * dims.D, r);
  const q = randomQuant(mixer, 8, 8, 13);
  calibrateActivations(mixer, q, input);

  const step = (precision: 'f32' | 'f64', pool?: BufferPool) => {
    const p = mixerParams(mixer, precision);
    const qv = quantVars(q, precision, dims.seqLen, true);
    const cast = (a: FloatArray) => (precision === 'f64' ? Float64Array.from(a) : Float32Array.from(a));
    const x = Var.constant(cast(input), [rows, dims.D]);
    const t = Var.constant(cast(target), [rows, dims.D]);
    const tape = new Tape({ pool });
    const loss = tape.cosineLoss(vimMixerOnTape(tape, x, p, qv), t);
    tape.backward(loss);
    const value = loss.item();
    tape.release();
    return { value, grads: quantParams(qv).map((v) => Float64Array.from(v.grad!)) };
  };

  it('a pooled float32 step (arrays overwritten, not zeroed) equals a plain one', () => {
    const plain = step('f32');
    const pool = new BufferPool();
    for (let i = 0; i < 3; i++) {
      const pooled = step('f32', pool);
      assert.equal(pooled.value, plain.value);
      pooled.grads.forEach((g, j) => assert.deepEqual(g, plain.grads[j]));
    }
  });

  it('float32 (INT8 products, fused kernels) tracks float64', () => {
    const s32 = step('f32'), s64 = step('f64');
    assert.ok(Math.abs(s32.value - s64.value) < 1e-4 * Math.max(1, s64.value), `loss ${s32.value} vs ${s64.value}`);
    s32.grads.forEach((g, i) => {
      const e = maxRelDiff(g, s64.grads[i]!);
      assert.ok(e < 1e-2, `gradient ${i}: rel diff ${e}`);
    });
  });
});
