import { AggregatorRegistry, collectDefaultMetrics, Counter, Gauge, Histogram, register, type Registry } from "prom-client";

/**
 * The process-wide metrics registry: prom-client's default one (so `AggregatorRegistry` can gather the worker
 * processes of `fabric ingress --workers N`), with the default process metrics (CPU, memory, event loop lag,
 * GC, handles) registered once. Every component declares its metrics in its own `metrics.ts` through the
 * helpers below; a metric declared twice (a module evaluated twice) is the same metric.
 */
export function metricsRegistry(): Registry {
  if (!defaultsRegistered) {
    defaultsRegistered = true;
    collectDefaultMetrics({ register });
  }
  return register;
}

let defaultsRegistered = false;

/** Latency buckets in seconds: 0.5 ms to 10 s. */
export const LATENCY_BUCKETS_SECONDS: readonly number[] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

interface MetricSpec<L extends string> {
  name: string;
  help: string;
  labelNames?: readonly L[];
}

/**
 * `FABRIC_METRICS=off`: the components' metrics count nothing (every metric is a no-op) and nothing is registered
 * but the default process metrics; for measuring what counting costs (the benchmarks run with and without).
 */
export const METRICS_OFF = process.env["FABRIC_METRICS"] === "off";

const noop: Record<string, unknown> = {};
for (const k of ["inc", "dec", "set", "observe", "reset", "remove", "zero", "startTimer"]) noop[k] = () => undefined;
noop["labels"] = () => noop;

function existing<T>(name: string, kind: abstract new (...args: never[]) => T): T | undefined {
  const m = metricsRegistry().getSingleMetric(name);
  if (m === undefined) return undefined;
  if (!(m instanceof kind)) throw new Error(`metric ${name} is declared twice with different types`);
  return m;
}

/** A counter (its name ends in `_total`) in the process registry; `collect` as for a gauge. */
export function counter<L extends string = string>(spec: MetricSpec<L> & { collect?: (this: Counter<L>) => void | Promise<void> }): Counter<L> {
  if (METRICS_OFF) return noop as unknown as Counter<L>;
  return existing<Counter<L>>(spec.name, Counter) ?? new Counter<L>({ ...spec, labelNames: spec.labelNames ?? [], registers: [metricsRegistry()] });
}

/** A gauge; `collect` runs at each scrape (it may be async) to set the gauge's values then. */
export function gauge<L extends string = string>(spec: MetricSpec<L> & { collect?: (this: Gauge<L>) => void | Promise<void> }): Gauge<L> {
  if (METRICS_OFF) return noop as unknown as Gauge<L>;
  return existing<Gauge<L>>(spec.name, Gauge) ?? new Gauge<L>({ ...spec, labelNames: spec.labelNames ?? [], registers: [metricsRegistry()] });
}

/** A histogram, latency buckets in seconds unless given. */
export function histogram<L extends string = string>(spec: MetricSpec<L> & { buckets?: readonly number[] }): Histogram<L> {
  if (METRICS_OFF) return noop as unknown as Histogram<L>;
  return (
    existing<Histogram<L>>(spec.name, Histogram) ??
    new Histogram<L>({ ...spec, labelNames: spec.labelNames ?? [], buckets: [...(spec.buckets ?? LATENCY_BUCKETS_SECONDS)], registers: [metricsRegistry()] })
  );
}

/** The metrics in Prometheus text format, with their content type. */
export async function renderMetrics(): Promise<{ contentType: string; body: string }> {
  const r = metricsRegistry();
  return { contentType: r.contentType, body: await r.metrics() };
}

/**
 * For the primary of a node:cluster (`fabric ingress --workers N`): the metrics of every worker process, summed
 * (gauges summed too; the default process metrics per worker are summed as well).
 */
export function clusterMetrics(): () => Promise<{ contentType: string; body: string }> {
  const aggregator = new AggregatorRegistry();
  return async () => ({ contentType: aggregator.contentType, body: await aggregator.clusterMetrics() });
}

/** Seconds since `start` (a `performance.now()` reading). */
export function secondsSince(start: number): number {
  return (performance.now() - start) / 1000;
}
