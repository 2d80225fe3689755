import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../lib/backend/addon.js';

/** ../shared/fixtures next to the checkout (PTQ4VM_FIXTURES overrides), or null when absent. */
export function fixturesDir(): string | null {
  const dir = process.env.PTQ4VM_FIXTURES ?? join(packageRoot(), '..', 'shared', 'fixtures');
  return existsSync(dir) ? dir : null;
}

/** Path of a fixture file, or null (the test then skips with a message saying so). */
export function fixture(name: string): string | null {
  const dir = fixturesDir();
  if (!dir) return null;
  const p = join(dir, name);
  return existsSync(p) ? p : null;
}

export const NO_FIXTURES = 'reference fixtures not found (../shared/fixtures or PTQ4VM_FIXTURES)';

/** ‖a − b‖ / ‖b‖ over float arrays. */
export function relativeError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch ${a.length} vs ${b.length}`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i]! - b[i]!;
    num += d * d;
    den += b[i]! * b[i]!;
  }
  return Math.sqrt(num) / Math.sqrt(den || 1e-300);
}

/** Rows of a [B, L, C] array in reversed token order per image (the reference's `_b` taps). */
export function flipTokens(x: Float32Array, B: number, L: number, C: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let b = 0; b < B; b++) for (let t = 0; t < L; t++) out.set(x.subarray((b * L + t) * C, (b * L + t + 1) * C), (b * L + (L - 1 - t)) * C);
  return out;
}
