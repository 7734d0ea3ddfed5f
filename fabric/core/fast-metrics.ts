import type { Metric } from "prom-client";
import { LATENCY_BUCKETS_SECONDS, METRICS_OFF, metricsRegistry } from "./metrics.js";

/**
 * Metrics for per-message paths (the MQTT ingress counts every PUBLISH): a child is a plain number slot that
 * an increment or observation adds to, and the registry reads the slots only at scrape time. prom-client's own
 * counters and histograms hash labels and build objects on every call (~0.2-0.4 µs), which measurably slows a
 * path that costs ~15 µs a message; these cost a few nanoseconds. They render as ordinary Prometheus counters
 * and histograms (and sum across `fabric ingress --workers N`).
 */

export interface FastCounterChild {
  inc(n?: number): void;
}

export interface FastHistogramChild {
  observe(value: number): void;
}

interface MetricValue {
  labels: Record<string, string | number>;
  value: number;
  metricName?: string;
}

interface Spec<L extends string> {
  name: string;
  help: string;
  labelNames: readonly L[];
}

const NOOP_COUNTER: FastCounterChild = { inc: () => undefined };
const NOOP_HISTOGRAM: FastHistogramChild = { observe: () => undefined };

/** Registers `metric` once (a module evaluated twice gets the first one back). */
function registered<T extends { name: string }>(metric: T): T {
  const r = metricsRegistry();
  const had = r.getSingleMetric(metric.name) as unknown;
  if (had !== undefined) {
    if (!(had instanceof (metric.constructor as new (...a: never[]) => T))) throw new Error(`metric ${metric.name} is declared twice with different types`);
    return had;
  }
  r.registerMetric(metric as unknown as Metric);
  return metric;
}

function keyOf<L extends string>(names: readonly L[], labels: Readonly<Record<L, string>>): string {
  return names.map((n) => labels[n]).join("\u0000");
}

class FastCounter<L extends string> {
  readonly type = "counter";
  readonly aggregator = "sum";
  private readonly slots = new Map<string, { labels: Record<string, string>; value: number }>();

  constructor(private readonly spec: Spec<L>) {}

  get name(): string {
    return this.spec.name;
  }

  get help(): string {
    return this.spec.help;
  }

  child(labels: Readonly<Record<L, string>>): FastCounterChild {
    const key = keyOf(this.spec.labelNames, labels);
    let slot = this.slots.get(key);
    if (slot === undefined) {
      slot = { labels: { ...labels }, value: 0 };
      this.slots.set(key, slot);
    }
    const s = slot;
    return {
      inc: (n = 1) => {
        s.value += n;
      },
    };
  }

  get(): { name: string; help: string; type: string; aggregator: string; values: MetricValue[] } {
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values: [...this.slots.values()].map((s) => ({ labels: s.labels, value: s.value })) };
  }
}

class FastHistogram<L extends string> {
  readonly type = "histogram";
  readonly aggregator = "sum";
  private readonly slots = new Map<string, { labels: Record<string, string>; counts: Float64Array; sum: number; count: number }>();

  constructor(
    private readonly spec: Spec<L>,
    private readonly buckets: readonly number[],
  ) {}

  get name(): string {
    return this.spec.name;
  }

  get help(): string {
    return this.spec.help;
  }

  child(labels: Readonly<Record<L, string>>): FastHistogramChild {
    const key = keyOf(this.spec.labelNames, labels);
    let slot = this.slots.get(key);
    if (slot === undefined) {
      // one count per bucket (not cumulative) and one past the last bound (+Inf)
      slot = { labels: { ...labels }, counts: new Float64Array(this.buckets.length + 1), sum: 0, count: 0 };
      this.slots.set(key, slot);
    }
    const s = slot;
    const bounds = this.buckets;
    return {
      observe: (value: number) => {
        let i = 0;
        while (i < bounds.length && value > (bounds[i] ?? Infinity)) i++;
        s.counts[i] = (s.counts[i] ?? 0) + 1;
        s.sum += value;
        s.count++;
      },
    };
  }

  get(): { name: string; help: string; type: string; aggregator: string; values: MetricValue[] } {
    const values: MetricValue[] = [];
    for (const s of this.slots.values()) {
      let cumulative = 0;
      for (let i = 0; i <= this.buckets.length; i++) {
        cumulative += s.counts[i] ?? 0;
        values.push({ labels: { ...s.labels, le: i < this.buckets.length ? (this.buckets[i] ?? 0) : "+Inf" }, value: cumulative, metricName: `${this.name}_bucket` });
      }
      values.push({ labels: s.labels, value: s.sum, metricName: `${this.name}_sum` }, { labels: s.labels, value: s.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
}

/** A counter (name ending in `_total`) whose children are plain number slots: see the module comment. */
export function fastCounter<L extends string>(spec: Spec<L>): { child(labels: Readonly<Record<L, string>>): FastCounterChild } {
  if (METRICS_OFF) return { child: () => NOOP_COUNTER };
  return registered(new FastCounter(spec));
}

/** A histogram (latency buckets in seconds unless given) whose children are plain slots: see the module comment. */
export function fastHistogram<L extends string>(spec: Spec<L> & { buckets?: readonly number[] }): { child(labels: Readonly<Record<L, string>>): FastHistogramChild } {
  if (METRICS_OFF) return { child: () => NOOP_HISTOGRAM };
  return registered(new FastHistogram(spec, spec.buckets ?? LATENCY_BUCKETS_SECONDS));
}
