/**
 * Just enough of the Prometheus text exposition format (version 0.0.4) for the server's own
 * metrics: counters and histograms with labels, and gauges read when scraped.
 */

export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

type Labels = Readonly<Record<string, string>>;

function labelKey(labels: Labels): string {
  return Object.keys(labels).sort().map((k) => `${k}="${escapeLabel(labels[k]!)}"`).join(',');
}

function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function formatNumber(v: number): string {
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  if (Number.isNaN(v)) return 'NaN';
  return String(v);
}

function withLabels(name: string, key: string, extra?: string): string {
  const all = [key, extra].filter((s) => s).join(',');
  return all ? `${name}{${all}}` : name;
}

interface Metric {
  render(): string[];
}

export class Counter implements Metric {
  private readonly values = new Map<string, number>();
  constructor(readonly name: string, readonly help: string) {}

  inc(labels: Labels = {}, by = 1): void {
    const k = labelKey(labels);
    this.values.set(k, (this.values.get(k) ?? 0) + by);
  }

  get(labels: Labels = {}): number {
    return this.values.get(labelKey(labels)) ?? 0;
  }

  render(): string[] {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`];
    for (const [k, v] of this.values) lines.push(`${withLabels(this.name, k)} ${formatNumber(v)}`);
    return lines;
  }
}

/** A gauge whose value is read from `read` at scrape time. */
export class Gauge implements Metric {
  constructor(readonly name: string, readonly help: string, private readonly read: () => number) {}

  render(): string[] {
    return [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} gauge`, `${this.name} ${formatNumber(this.read())}`];
  }
}

interface Series {
  buckets: number[];
  sum: number;
  count: number;
}

export class Histogram implements Metric {
  private readonly series = new Map<string, Series>();
  readonly bounds: readonly number[];

  constructor(readonly name: string, readonly help: string, bounds: readonly number[]) {
    if (bounds.some((b, i) => i > 0 && b <= bounds[i - 1]!)) throw new RangeError(`${name}: bucket bounds must increase`);
    this.bounds = bounds;
  }

  observe(value: number, labels: Labels = {}): void {
    const k = labelKey(labels);
    let s = this.series.get(k);
    if (!s) {
      s = { buckets: new Array<number>(this.bounds.length).fill(0), sum: 0, count: 0 };
      this.series.set(k, s);
    }
    // Cumulative buckets are formed when rendering; here each value lands in its first bucket.
    const i = this.bounds.findIndex((b) => value <= b);
    if (i >= 0) s.buckets[i]!++;
    s.sum += value;
    s.count++;
  }

  /** Observations so far (all label sets, or one). */
  count(labels?: Labels): number {
    if (labels) return this.series.get(labelKey(labels))?.count ?? 0;
    let n = 0;
    for (const s of this.series.values()) n += s.count;
    return n;
  }

  render(): string[] {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    for (const [k, s] of this.series) {
      let cum = 0;
      this.bounds.forEach((b, i) => {
        cum += s.buckets[i]!;
        lines.push(`${withLabels(`${this.name}_bucket`, k, `le="${formatNumber(b)}"`)} ${cum}`);
      });
      lines.push(`${withLabels(`${this.name}_bucket`, k, 'le="+Inf"')} ${s.count}`);
      lines.push(`${withLabels(`${this.name}_sum`, k)} ${formatNumber(s.sum)}`);
      lines.push(`${withLabels(`${this.name}_count`, k)} ${s.count}`);
    }
    return lines;
  }
}

export class Registry {
  private readonly metrics: Metric[] = [];

  add<M extends Metric>(m: M): M {
    this.metrics.push(m);
    return m;
  }

  render(): string {
    return this.metrics.flatMap((m) => m.render()).join('\n') + '\n';
  }
}

/** The server's metrics. */
export class ServerMetrics {
  readonly registry = new Registry();
  readonly requests = this.registry.add(new Counter('ptq4vm_http_requests_total', 'HTTP requests answered, by route and status code.'));
  readonly latency = this.registry.add(new Histogram(
    'ptq4vm_http_request_duration_seconds', 'Time from request received to response sent, by route.',
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  ));
  readonly batchSize = this.registry.add(new Histogram(
    'ptq4vm_batch_size', 'Images per model forward.', [1, 2, 4, 8, 16, 32, 64, 128, 256],
  ));
  readonly batchSeconds = this.registry.add(new Histogram(
    'ptq4vm_batch_duration_seconds', 'Time of one batched model forward.',
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
  ));
  readonly rejected = this.registry.add(new Counter('ptq4vm_rejected_total', 'Classify requests refused before inference, by reason.'));

  constructor(queueDepth: () => number, inFlight: () => number) {
    this.registry.add(new Gauge('ptq4vm_queue_depth', 'Classify requests admitted and not yet in a running batch (decoding or waiting).', queueDepth));
    this.registry.add(new Gauge('ptq4vm_inflight_requests', 'HTTP requests being handled now.', inFlight));
  }
}
