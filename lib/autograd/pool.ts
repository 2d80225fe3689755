import type { FloatArray } from './native.js';
import type { Precision } from './var.js';

/** Arrays a step recycles: float operands and gradients, and u8 levels of quantized activations. */
type Pooled = FloatArray | Uint8Array;
type Kind = Precision | 'u8';

function kindOf(a: Pooled): Kind {
  return a instanceof Float64Array ? 'f64' : a instanceof Float32Array ? 'f32' : 'u8';
}

/**
 * Recycles the big arrays of a training step: every JLSS step builds the same graph, so the
 * arrays one tape releases are exactly those the next one needs. Saves the page faults and
 * zero-filling of ~100 MB of fresh allocations per step.
 */
export class BufferPool {
  private readonly free = new Map<string, Pooled[]>();

  /** An array of n values of the precision; zeroed when `zero`, otherwise of unspecified content. */
  take(precision: Precision, n: number, zero: boolean): FloatArray {
    return this.takeKind(precision, n, zero) as FloatArray;
  }

  /** A byte array of n values of unspecified content. */
  takeBytes(n: number): Uint8Array {
    return this.takeKind('u8', n, false) as Uint8Array;
  }

  /** Hands an array back; the caller must not use it afterwards. */
  give(a: Pooled): void {
    const key = `${kindOf(a)}:${a.length}`;
    let list = this.free.get(key);
    if (!list) this.free.set(key, (list = []));
    list.push(a);
  }

  /** Forgets every pooled array (they are garbage-collected). */
  clear(): void {
    this.free.clear();
  }

  private takeKind(kind: Kind, n: number, zero: boolean): Pooled {
    const a = this.free.get(`${kind}:${n}`)?.pop();
    if (!a) return kind === 'f64' ? new Float64Array(n) : kind === 'f32' ? new Float32Array(n) : new Uint8Array(n);
    if (zero) a.fill(0);
    return a;
  }
}
