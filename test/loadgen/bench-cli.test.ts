/**
 * `fabric bench` (issue 16) against a real hub: the figures are real (what was stored is what was sent, latencies
 * positive and ordered, the offered rate the one asked for), the chart is written, non-loopback targets and bad
 * input are refused.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BenchResult } from "../../fabric/loadgen/index.js";
import { Harness, runCli, startTestHub, type TestHub } from "../harness/index.js";

const h = new Harness();
let hub: TestHub;
let flags: string[];

afterAll(() => h.dispose());
beforeAll(async () => {
  hub = await startTestHub(h, { mqtt: true, grpc: true, windows: false, sinks: false });
  flags = ["--store", hub.keystoreDir, "--server", hub.urls[0] ?? "", "--mqtt", `mqtt://127.0.0.1:${hub.mqtt?.tcp ?? 0}`, "--grpc", `127.0.0.1:${hub.grpc ?? 0}`];
}, 60_000);

describe("fabric bench", () => {
  it("compare: the three entries under the same load, every reading sent stored once, latencies ordered", async () => {
    const chart = join(h.tempDir("bench-"), "chart.html");
    const r = await runCli("fabric", ["bench", "compare", "--duration", "2s", "--rate", "300", "--connections", "2", "--json", "--chart", chart, ...flags], { timeoutMs: 60_000 });
    expect(r.code, r.stderr).toBe(0);
    const results = JSON.parse(r.stdout) as BenchResult[];
    expect(results.map((x) => x.path)).toEqual(["nats", "mqtt", "grpc"]);
    for (const x of results) {
      expect(x.failed, x.path).toBe(0);
      expect(x.sent, x.path).toBeGreaterThan(400);
      expect(x.stored, x.path).toBe(x.sent);
      expect(x.delivered, x.path).toBe(x.sent);
      expect(x.offeredPerSecond, x.path).toBeGreaterThan(200);
      expect(x.offeredPerSecond, x.path).toBeLessThan(400);
      const l = x.latencyMs;
      expect(l, x.path).toBeDefined();
      expect(l?.p50 ?? -1).toBeGreaterThanOrEqual(0);
      expect(l?.p50 ?? 0).toBeLessThanOrEqual(l?.p90 ?? 0);
      expect(l?.p90 ?? 0).toBeLessThanOrEqual(l?.p99 ?? 0);
      expect(l?.p99 ?? 0).toBeLessThanOrEqual(l?.max ?? 0);
      expect(x.timeline.length, x.path).toBeGreaterThanOrEqual(2);
      // the bytes on the wire per reading, counted by a relay: the 100-byte payload and each protocol's framing
      expect(x.wireBytesPerReading, x.path).toBeGreaterThan(100);
      expect(x.wireBytesPerReading, x.path).toBeLessThan(x.path === "grpc" ? 1_500 : 400);
    }
    // progress lines while it ran, a chart after
    expect(r.stderr).toMatch(/nats: 1 s, \d+ sent/);
    expect(readFileSync(chart, "utf8")).toMatch(/<svg[\s\S]*polyline[\s\S]*grpc p99/);
  });

  it("the table, and refusals: an unknown path, a bad number, a target not on loopback", async () => {
    const t = await runCli("fabric", ["bench", "nats", "--duration", "1s", "--rate", "100", ...flags], { timeoutMs: 30_000 });
    expect(t.code, t.stderr).toBe(0);
    expect(t.stdout).toMatch(/\| nats \| 4 \|/);
    // gzip: gRPC calls compressed, MQTT and NATS payloads (content-encoding), every reading still stored once
    const gz = await runCli("fabric", ["bench", "compare", "--duration", "1s", "--rate", "100", "--compression", "gzip", "--batch", "10", "--json", ...flags], { timeoutMs: 60_000 });
    expect(gz.code, gz.stderr).toBe(0);
    for (const x of JSON.parse(gz.stdout) as BenchResult[]) {
      expect(x, x.path).toMatchObject({ compression: "gzip", batch: 10, failed: 0 });
      expect(x.stored, x.path).toBe(x.sent);
      expect(x.delivered, x.path).toBe(x.sent);
    }
    const bad: [string[], RegExp][] = [
      [["bench", "amqp", ...flags], /path "amqp"/],
      [["bench", "nats", "--rate", "lots", ...flags], /--rate "lots" is not a whole number/],
      [["bench", "nats", "--connections", "0", ...flags], /connections/],
      [["bench", "grpc", "--compression", "zstd", ...flags], /zstd.*invalid|Allowed choices/i],
      [["bench", "nats", "--store", hub.keystoreDir, "--server", "nats://203.0.113.7:4222"], /203\.0\.113\.7 is not loopback: give --target-is-mine/],
    ];
    for (const [args, message] of bad) {
      const r = await runCli("fabric", args);
      expect(r.code, args.join(" ")).not.toBe(0);
      expect(r.stderr, args.join(" ")).toMatch(message);
    }
  });
});
