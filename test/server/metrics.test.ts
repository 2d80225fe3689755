import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Counter, Gauge, Histogram, Registry } from '../../lib/server/metrics.js';

describe('Prometheus metrics', () => {
  test('counter: one series per label set, labels sorted and escaped', () => {
    const c = new Counter('reqs_total', 'Requests.');
    c.inc({ route: '/a', code: '200' });
    c.inc({ code: '200', route: '/a' }, 2);
    c.inc({ route: 'we"ird\\\n', code: '500' });
    assert.equal(c.get({ route: '/a', code: '200' }), 3);
    assert.deepEqual(c.render(), [
      '# HELP reqs_total Requests.',
      '# TYPE reqs_total counter',
      'reqs_total{code="200",route="/a"} 3',
      'reqs_total{code="500",route="we\\"ird\\\\\\n"} 1',
    ]);
  });

  test('histogram: cumulative buckets, +Inf, sum and count per label set', () => {
    const h = new Histogram('lat_seconds', 'Latency.', [0.1, 1, 10]);
    for (const v of [0.0625, 0.09375, 0.5, 2, 20, 0.75]) h.observe(v); // exact in binary: the sum prints exactly
    h.observe(3, { route: '/b' });
    assert.equal(h.count(), 7);
    assert.equal(h.count({ route: '/b' }), 1);
    assert.deepEqual(h.render(), [
      '# HELP lat_seconds Latency.',
      '# TYPE lat_seconds histogram',
      'lat_seconds_bucket{le="0.1"} 2',
      'lat_seconds_bucket{le="1"} 4',
      'lat_seconds_bucket{le="10"} 5',
      'lat_seconds_bucket{le="+Inf"} 6',
      'lat_seconds_sum 23.40625',
      'lat_seconds_count 6',
      'lat_seconds_bucket{route="/b",le="0.1"} 0',
      'lat_seconds_bucket{route="/b",le="1"} 0',
      'lat_seconds_bucket{route="/b",le="10"} 1',
      'lat_seconds_bucket{route="/b",le="+Inf"} 1',
      'lat_seconds_sum{route="/b"} 3',
      'lat_seconds_count{route="/b"} 1',
    ]);
    assert.throws(() => new Histogram('x', 'x', [1, 1]), RangeError);
  });

  test('gauge is read at render time; a registry renders all, newline-terminated', () => {
    let depth = 3;
    const r = new Registry();
    r.add(new Gauge('queue_depth', 'Depth.', () => depth));
    r.add(new Counter('n_total', 'N.')).inc();
    assert.equal(r.render(), '# HELP queue_depth Depth.\n# TYPE queue_depth gauge\nqueue_depth 3\n# HELP n_total N.\n# TYPE n_total counter\nn_total 1\n');
    depth = 0;
    assert.match(r.render(), /^queue_depth 0$/m);
  });
});
