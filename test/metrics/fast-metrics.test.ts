import { describe, expect, it } from "vitest";
import { fastCounter, fastHistogram, renderMetrics } from "../../fabric/core/index.js";

function sample(body: string, line: string): number | undefined {
  const l = body.split("\n").find((x) => x.startsWith(`${line} `));
  return l === undefined ? undefined : Number(l.slice(line.length + 1));
}

describe("fast metrics (plain slots read at scrape time)", () => {
  it("render as Prometheus counters and cumulative histograms, and a second declaration is the same metric", async () => {
    const c = fastCounter<"qos">({ name: "test_fast_things_total", help: "things", labelNames: ["qos"] });
    c.child({ qos: "1" }).inc();
    c.child({ qos: "1" }).inc(2);
    fastCounter<"qos">({ name: "test_fast_things_total", help: "things", labelNames: ["qos"] }).child({ qos: "2" }).inc();
    const hist = fastHistogram<"qos">({ name: "test_fast_latency_seconds", help: "latency", labelNames: ["qos"], buckets: [0.01, 0.1, 1] });
    const one = hist.child({ qos: "1" });
    for (const v of [0.005, 0.01, 0.05, 0.5, 3]) one.observe(v);
    const { body } = await renderMetrics();
    expect(body).toContain("# TYPE test_fast_things_total counter");
    expect(sample(body, 'test_fast_things_total{qos="1"}')).toBe(3);
    expect(sample(body, 'test_fast_things_total{qos="2"}')).toBe(1);
    expect(body).toContain("# TYPE test_fast_latency_seconds histogram");
    expect(sample(body, 'test_fast_latency_seconds_bucket{qos="1",le="0.01"}')).toBe(2);
    expect(sample(body, 'test_fast_latency_seconds_bucket{qos="1",le="0.1"}')).toBe(3);
    expect(sample(body, 'test_fast_latency_seconds_bucket{qos="1",le="1"}')).toBe(4);
    expect(sample(body, 'test_fast_latency_seconds_bucket{qos="1",le="+Inf"}')).toBe(5);
    expect(sample(body, 'test_fast_latency_seconds_count{qos="1"}')).toBe(5);
    expect(sample(body, 'test_fast_latency_seconds_sum{qos="1"}')).toBeCloseTo(3.565, 6);
    expect(() => fastHistogram({ name: "test_fast_things_total", help: "x", labelNames: [] })).toThrow(/declared twice/);
  });
});
