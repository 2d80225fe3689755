import type { FloatArray } from './native.js';

/** float32: the fast native path JLSS trains with; float64: the same ops in double, for gradient checks. */
export type Precision = 'f32' | 'f64';

export function precisionOf(a: FloatArray): Precision {
  return a instanceof Float64Array ? 'f64' : 'f32';
}

/** A zero-filled array of the precision. */
export function allocFloats(precision: Precision, n: number): FloatArray {
  return precision === 'f64' ? new Float64Array(n) : new Float32Array(n);
}

/** The values as an array of the precision (the same array when it already is one). */
export function toPrecision(a: ArrayLike<number>, precision: Precision): FloatArray {
  if (precision === 'f64') return a instanceof Float64Array ? a : Float64Array.from(a);
  return a instanceof Float32Array ? a : Float32Array.from(a);
}

/**
 * A value in the tape: a dense row-major array with a shape ([rows, cols] for matrices, [n] for
 * vectors, [1] for the loss), and after `Tape.backward` its gradient. Leaves (parameters,
 * inputs) are made with `Var.param` / `Var.constant`; ops of a Tape make the others.
 */
export class Var {
  readonly data: FloatArray;
  readonly shape: readonly number[];
  /** True for parameters and for every value computed from one. */
  readonly requiresGrad: boolean;
  /**
   * ∂loss/∂this, same length as data, filled by Tape.backward (added to what is there, so
   * gradients accumulate until zeroGrad). Intermediate values' gradients are freed once used.
   */
  grad: FloatArray | null = null;

  constructor(data: FloatArray, shape: readonly number[], requiresGrad: boolean) {
    let n = 1;
    for (const d of shape) {
      if (!Number.isSafeInteger(d) || d < 0) throw new RangeError(`autograd: invalid shape [${shape.join(', ')}]`);
      n *= d;
    }
    if (n !== data.length) throw new RangeError(`autograd: shape [${shape.join(', ')}] needs ${n} values, got ${data.length}`);
    this.data = data;
    this.shape = Object.freeze([...shape]);
    this.requiresGrad = requiresGrad;
  }

  /** A trainable leaf (σ, step sizes). Its data may be updated in place between tapes. */
  static param(data: FloatArray, shape: readonly number[] = [data.length]): Var {
    return new Var(data, shape, true);
  }

  /** A leaf without gradient (inputs, frozen weights, targets). */
  static constant(data: FloatArray, shape: readonly number[] = [data.length]): Var {
    return new Var(data, shape, false);
  }

  get precision(): Precision {
    return precisionOf(this.data);
  }

  get size(): number {
    return this.data.length;
  }

  /** The single value of a one-element Var (the loss). */
  item(): number {
    if (this.data.length !== 1) throw new RangeError(`autograd: item() of a Var with ${this.data.length} values`);
    return this.data[0]!;
  }

  zeroGrad(): void {
    this.grad = null;
  }

  /** The gradient array, allocated (zeros) on first use. */
  gradBuffer(): FloatArray {
    if (!this.grad) this.grad = allocFloats(this.precision, this.data.length);
    return this.grad;
  }
}
