import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NatsConnection } from "@nats-io/transport-node";
import { JetStreamPublisher, pollUntil } from "../../fabric/core/index.js";
import { saveDefinition } from "../../streams/index.js";
import { startEdge } from "../../edge/index.js";
import { Harness, startTestHub, testLogger, type TestHub } from "../harness/index.js";
import { windowOutputs } from "../streams/window-helpers.js";
import { hubCount, hubService, linkedSite } from "./site-helpers.js";

/** A site pre-aggregates its telemetry and ships only the mergeable partials; the hub merges them. */
const h = new Harness();
let hub: TestHub;
let svc: NatsConnection;
afterAll(() => h.dispose());
beforeAll(async () => {
  hub = await startTestHub(h, { windows: true });
  svc = await hubService(h, hub);
});

const edgeWindow = { name: "edge-10s", window: { kind: "tumbling", sizeMs: 10_000 }, aggregates: ["count", "sum", "min", "max"], outOfOrderMs: 0, idleCloseMs: 1_000 };

describe("pre-aggregation at a site", () => {
  it("ships partials instead of raw telemetry, and a hub window merging them gets every reading's statistics", async () => {
    await saveDefinition(svc, {
      name: "site-10s",
      source: { stream: "AGGREGATES", filter: "agg.edge-10s.>", partials: true },
      key: [2, 3, 4],
      window: { kind: "tumbling", sizeMs: 10_000 },
      aggregates: ["count", "sum", "min", "max"],
      outOfOrderMs: 0,
      idleCloseMs: 1_000,
    });
    const { s, dev } = await linkedSite(h, hub, "pre", { preAggregate: [edgeWindow], shipRawTelemetry: false });
    // 30 readings a second apart in event time, three whole windows: values 0..29
    const t0 = Math.floor(Date.now() / 10_000) * 10_000 - 60_000;
    const pub = new JetStreamPublisher(dev.nc);
    await Promise.all(Array.from({ length: 30 }, (_, i) => pub.publish("telemetry.pre.d1.temp", Buffer.from(JSON.stringify({ value: i, ts: t0 + i * 1_000 })))));
    pub.close();
    const finals = await pollUntil(async () => {
      const out = (await windowOutputs(svc, "site-10s")).map((x) => JSON.parse(x) as { key: string; start: number; kind: string; count: number; sum: number; min: number; max: number });
      const f = out.filter((x) => x.kind === "final");
      return f.length >= 3 ? f.sort((a, b) => a.start - b.start) : undefined;
    }, { timeoutMs: 30_000, intervalMs: 250, what: "the hub's merged windows" });
    expect(finals.map((f) => [f.key, f.start - t0, f.count, f.sum, f.min, f.max])).toEqual([
      ["pre.d1.temp", 0, 10, 45, 0, 9],
      ["pre.d1.temp", 10_000, 10, 145, 10, 19],
      ["pre.d1.temp", 20_000, 10, 245, 20, 29],
    ]);
    // raw telemetry stayed at the site
    expect(await hubCount(svc, "TELEMETRY", "telemetry.pre.>")).toBe(0);
    const r = await s.edge.report();
    expect(r.shipping).toEqual(["events", "aggregates"]);
    expect(r.streams.telemetry.backlog).toBe(0);
    expect(r.streams.aggregates?.messages).toBeGreaterThanOrEqual(3);
    await dev.nc.close();
  });

  it("refuses site windows that cannot merge once, naming the field", async () => {
    const base = { site: "bad-pre", hub: ["nats-leaf://127.0.0.1:1"], creds: "/nonexistent", dataDir: h.tempDir("fabric-edge-bad-") };
    await expect(startEdge({ ...base, preAggregate: [{ ...edgeWindow, window: { kind: "hopping", sizeMs: 10_000, hopMs: 5_000 } }] }, testLogger())).rejects.toThrow(/preAggregate\.0\.window\.kind: a site pre-aggregates in tumbling windows only/);
    await expect(startEdge({ ...base, preAggregate: [{ ...edgeWindow, source: { stream: "X" } }] }, testLogger())).rejects.toThrow(/preAggregate\.0\.source: a site's windows read the site's own telemetry/);
    await expect(startEdge({ ...base, preAggregate: [{ ...edgeWindow, aggregates: [] }] }, testLogger())).rejects.toThrow(/preAggregate\.0\.aggregates/);
  });
});
