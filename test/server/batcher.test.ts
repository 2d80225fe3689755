import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Batcher, QueueFullError } from '../../lib/server/batcher.js';

/** A batcher over numbers whose runner doubles them, recording each batch and holding it `ms`. */
function doubling(opts: { maxBatch: number; maxWaitMs: number; maxQueue?: number; ms?: number }) {
  const batches: number[][] = [];
  let gate: Promise<void> | undefined;
  const b = new Batcher<number, number>({
    maxBatch: opts.maxBatch, maxWaitMs: opts.maxWaitMs, maxQueue: opts.maxQueue ?? 1000,
    run: async (items) => {
      batches.push(items);
      if (gate) await gate;
      else await sleep(opts.ms ?? 0);
      if (items.includes(-1)) throw new Error('bad item');
      return items.map((x) => 2 * x);
    },
  });
  return { b, batches, hold: (p: Promise<void>) => (gate = p), release: () => (gate = undefined) };
}

describe('Batcher', () => {
  test('items arriving within maxWaitMs run as one batch; outputs go back to their callers', async () => {
    const { b, batches } = doubling({ maxBatch: 8, maxWaitMs: 30 });
    const out = await Promise.all([1, 2, 3, 4, 5].map((x) => b.submit(x)));
    assert.deepEqual(out, [2, 4, 6, 8, 10]);
    assert.deepEqual(batches, [[1, 2, 3, 4, 5]]);
  });

  test('a full batch starts at once, without waiting', async () => {
    const { b, batches } = doubling({ maxBatch: 3, maxWaitMs: 10_000 });
    const t0 = performance.now();
    const out = await Promise.all([1, 2, 3].map((x) => b.submit(x)));
    assert.deepEqual(out, [2, 4, 6]);
    assert.ok(performance.now() - t0 < 1000);
    assert.deepEqual(batches, [[1, 2, 3]]);
  });

  test('a lone item waits maxWaitMs, then runs alone', async () => {
    const { b, batches } = doubling({ maxBatch: 8, maxWaitMs: 40 });
    const t0 = performance.now();
    assert.equal(await b.submit(21), 42);
    const waited = performance.now() - t0;
    assert.ok(waited >= 35 && waited < 1000, `waited ${waited} ms`);
    assert.deepEqual(batches, [[21]]);
  });

  test('while a batch runs, arrivals gather (up to maxBatch) for the next, in order', async () => {
    const { b, batches, hold, release } = doubling({ maxBatch: 4, maxWaitMs: 0 });
    let open!: () => void;
    hold(new Promise((r) => (open = r)));
    const first = b.submit(0); // runs alone at once (maxWaitMs 0)
    await sleep(5);
    assert.equal(b.busy, true);
    const rest = [1, 2, 3, 4, 5, 6, 7].map((x) => b.submit(x)); // 7 arrive while busy
    assert.equal(b.queued, 7);
    release();
    open();
    assert.deepEqual(await Promise.all([first, ...rest]), [0, 2, 4, 6, 8, 10, 12, 14]);
    assert.deepEqual(batches, [[0], [1, 2, 3, 4], [5, 6, 7]]);
    await b.idle();
    assert.equal(b.queued, 0);
    assert.equal(b.busy, false);
  });

  test('bounded: submit throws QueueFullError with a Retry-After once maxQueue items wait', async () => {
    const { b, hold, release } = doubling({ maxBatch: 2, maxWaitMs: 0, maxQueue: 3 });
    let open!: () => void;
    hold(new Promise((r) => (open = r)));
    const running = b.submit(1);
    await sleep(5);
    const waiting = [2, 3, 4].map((x) => b.submit(x));
    assert.equal(b.hasRoom(), false);
    assert.throws(() => b.submit(5), (e: unknown) => e instanceof QueueFullError && e.retryAfterS >= 1);
    release();
    open();
    assert.deepEqual(await Promise.all([running, ...waiting]), [2, 4, 6, 8]);
    assert.equal(await b.submit(5), 10); // room again
  });

  test('a failing batch rejects its own items only', async () => {
    const { b, batches } = doubling({ maxBatch: 2, maxWaitMs: 20 });
    const r = await Promise.allSettled([b.submit(1), b.submit(-1), b.submit(3), b.submit(4)]);
    assert.deepEqual(batches, [[1, -1], [3, 4]]);
    assert.equal(r[0]!.status, 'rejected');
    assert.equal(r[1]!.status, 'rejected');
    assert.deepEqual(r.slice(2), [{ status: 'fulfilled', value: 6 }, { status: 'fulfilled', value: 8 }]);
  });

  test('a runner returning the wrong number of outputs rejects the batch', async () => {
    const b = new Batcher<number, number>({ maxBatch: 4, maxWaitMs: 5, maxQueue: 10, run: async (items) => items.slice(1) });
    const r = await Promise.allSettled([b.submit(1), b.submit(2)]);
    assert.ok(r.every((x) => x.status === 'rejected' && /2 items/.test(String(x.reason))));
  });

  test('options are checked', () => {
    const run = async (x: number[]) => x;
    assert.throws(() => new Batcher({ run, maxBatch: 0, maxWaitMs: 1, maxQueue: 1 }), RangeError);
    assert.throws(() => new Batcher({ run, maxBatch: 1, maxWaitMs: -1, maxQueue: 1 }), RangeError);
    assert.throws(() => new Batcher({ run, maxBatch: 1, maxWaitMs: 1, maxQueue: 0 }), RangeError);
  });
});
