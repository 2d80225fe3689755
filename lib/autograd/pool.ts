import type { FloatArray } from './native.js';
import type { Precision } from './var.js';

/**
 * Recycles the big arrays of a training step: every JLSS step builds the same graph, so the
 * arrays one tape releases are exactly those the next one needs. Saves the page faults and
 * zero-filling of ~100 MB of fresh allocations per step.
 */
export class BufferPool {
  private readonly free = new Map<string, FloatArray[]>();

  /** An array of n values of the precision; zeroed when `zero`, otherwise of unspecified content. */
  take(precision: Precision, n: number, zero: boolean): FloatArray {
    const a = this.free.get(`${precision}:${n}`)?.pop();
    if (!a) return precision === 'f64' ? new Float64Array(n) : new Float32Array(n);
    if (zero) a.fill(0);
    return a;
  }

  /** Hands an array back; the caller must not use it afterwards. */
  give(a: FloatArray): void {
    const key = `${a instanceof Float64Array ? 'f64' : 'f32'}:${a.length}`;
    let list = this.free.get(key);
    if (!list) this.free.set(key, (list = []));
    list.push(a);
  }

  /** Forgets every pooled array (they are garbage-collected). */
  clear(): void {
    this.free.clear();
  }
}
