import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import { DEFAULT_EDGE_METRICS_PORT, DEFAULT_INGRESS_METRICS_PORT, DEFAULT_METRICS_PORT, DEFAULT_SINK_METRICS_PORT, DEFAULT_WORKER_METRICS_PORT, declareNatsServerMetrics, metricsRegistry, projectRoot } from "../../fabric/core/index.js";
// every component's metrics module: importing one declares its metrics in the process registry
import "../../ingress/metrics.js";
import "../../fabric/grpc/metrics.js";
import "../../streams/metrics.js";
import "../../identity/metrics.js";
import "../../fabric/hub/regions/metrics.js";
import "../../edge/metrics.js";
import "../../sink/metrics.js";

/** PromQL words that are not metric names: functions, aggregations, keywords. */
const KEYWORDS = new Set(["by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset", "inf", "nan"]);

/** The metric names a PromQL expression reads: identifiers outside label matchers, ranges, strings and groupings, that are not called. */
export function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, "")
    .replace(/\{[^}]*\}/g, "")
    .replace(/\[[^\]]*\]/g, "")
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, "");
  const names: string[] = [];
  for (const m of bare.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    const after = bare.slice((m.index ?? 0) + m[0].length).trimStart();
    if (after.startsWith("(") || KEYWORDS.has(m[0].toLowerCase())) continue;
    names.push(m[0]);
  }
  return names;
}

/** Every series name the fabric exports: the metrics of every component (and a histogram's _bucket/_sum/_count). */
async function exported(): Promise<Set<string>> {
  declareNatsServerMetrics();
  const names = new Set<string>();
  for (const m of await metricsRegistry().getMetricsAsJSON()) {
    names.add(m.name);
    if (String(m.type) === "histogram") for (const s of ["_bucket", "_sum", "_count"]) names.add(`${m.name}${s}`);
  }
  return names;
}

const dashboardSchemaOk = (d: unknown): d is { title: string; panels: { title: string; targets: { expr: string }[] }[] } =>
  typeof d === "object" && d !== null && Array.isArray((d as { panels?: unknown }).panels);

describe("deploy/", () => {
  it("metricNames finds the metrics of an expression and nothing else", () => {
    expect(metricNames('histogram_quantile(0.99, sum by (le, qos) (rate(fabric_mqtt_publish_ack_seconds_bucket{qos="1"}[1m])))')).toEqual(["fabric_mqtt_publish_ack_seconds_bucket"]);
    expect(metricNames("sum by (site) (a_bytes) / sum without (x) (b_bytes) > bool 0")).toEqual(["a_bytes", "b_bytes"]);
  });

  it("the Grafana dashboard loads, every panel has queries, and every query reads only metrics the fabric exports", async () => {
    const dashboard: unknown = JSON.parse(readFileSync(join(projectRoot(), "deploy", "grafana", "fabric-dashboard.json"), "utf8"));
    expect(dashboardSchemaOk(dashboard)).toBe(true);
    if (!dashboardSchemaOk(dashboard)) return;
    const known = await exported();
    expect(known.has("fabric_mqtt_publishes_total")).toBe(true);
    expect(known.has("process_cpu_seconds_total")).toBe(true);
    expect(known.has("nats_jetstream_consumer_num_pending")).toBe(true);
    const unknown: string[] = [];
    const used = new Set<string>();
    for (const p of dashboard.panels) {
      expect(p.targets.length, p.title).toBeGreaterThan(0);
      for (const t of p.targets) {
        const names = metricNames(t.expr);
        expect(names.length, `${p.title}: ${t.expr}`).toBeGreaterThan(0);
        for (const n of names) {
          used.add(n);
          if (!known.has(n)) unknown.push(`${p.title}: ${n}`);
        }
      }
    }
    expect(unknown).toEqual([]);
    // the panels the issue asks for: connections, rates by QoS, ack latency, stream and consumer lag, window lag, edge backlogs, revocations
    for (const n of ["fabric_mqtt_connections", "fabric_mqtt_publishes_total", "fabric_mqtt_publish_ack_seconds_bucket", "nats_jetstream_stream_messages", "nats_jetstream_consumer_num_pending", "fabric_window_partition_lag_messages", "fabric_edge_backlog_messages", "fabric_identity_revocations_total"]) {
      expect(used.has(n), n).toBe(true);
    }
  });

  it("deploy/prometheus.yml scrapes the hub on 9464 and the other processes on their default ports", () => {
    const config = parseYaml(readFileSync(join(projectRoot(), "deploy", "prometheus.yml"), "utf8")) as { scrape_configs: { job_name: string; static_configs: { targets: string[] }[] }[] };
    const ports = config.scrape_configs.flatMap((j) => j.static_configs.flatMap((s) => s.targets.map((t) => t.split(":").pop())));
    expect(new Set(ports)).toEqual(new Set([DEFAULT_METRICS_PORT, DEFAULT_EDGE_METRICS_PORT, DEFAULT_INGRESS_METRICS_PORT, DEFAULT_WORKER_METRICS_PORT, DEFAULT_SINK_METRICS_PORT].map(String)));
  });
});
