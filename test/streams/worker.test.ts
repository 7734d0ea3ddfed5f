import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { JetStreamPublisher, pollUntil } from "../../fabric/core/index.js";
import { startWindowWorker, windowDefinitionSchema, type WindowDefinitionInput, type WindowWorker } from "../../streams/index.js";
import { Harness, testLogger } from "../harness/index.js";
import { windowOutputs, windowTestHub } from "./window-helpers.js";

const h = new Harness();
let nc: NatsConnection;
afterAll(() => h.dispose());
beforeAll(async () => {
  ({ nc } = await windowTestHub(h));
});

const T0 = 1_700_000_000_000;

async function publish(messages: [subject: string, body: string][]): Promise<void> {
  const pub = new JetStreamPublisher(nc);
  await Promise.all(messages.map(([subject, body]) => pub.publish(subject, Buffer.from(body))));
  pub.close();
}

async function worker(input: WindowDefinitionInput): Promise<WindowWorker> {
  const w = await startWindowWorker({ connection: nc, definition: windowDefinitionSchema.parse(input), logger: testLogger(), checkpointEveryMs: 100 });
  h.defer(() => w.stop());
  return w;
}

type Result = Record<string, number | string | boolean | null | undefined>;
const results = async (name: string): Promise<Result[]> => (await windowOutputs(nc, name)).map((s) => JSON.parse(s) as Result);

describe("window workers on JetStream", () => {
  it("counts bad input in REJECTED with the reason, and keeps aggregating the good input around it", async () => {
    const reading = (ts: number, value: number): [string, string] => ["telemetry.bad.d1.temp", JSON.stringify({ ts, value })];
    await publish([
      reading(T0 + 1_000, 10),
      ["telemetry.bad.d1.temp", JSON.stringify({ value: 3 })], // no ts
      ["telemetry.bad.d1.temp", JSON.stringify({ ts: T0 + 2_000 })], // no value
      ["telemetry.bad.d1.temp", JSON.stringify({ ts: T0 + 2_000, value: "hot" })], // not a number
      ["telemetry.bad.d1.temp", JSON.stringify({ ts: 1e20, value: 1 })], // absurd time
      ["telemetry.bad.d1.temp", "{not json"],
      ["telemetry.bad.short", JSON.stringify({ ts: T0, value: 1 })], // no metric token for the key
      reading(T0 + 3_000, 20),
      reading(T0 + 25_000, 0), // closes [T0, T0 + 10 s)
    ]);
    const w = await worker({ name: "bad", source: { filter: "telemetry.bad.>" }, window: { kind: "tumbling", sizeMs: 10_000 }, aggregates: ["count", "sum", "max"], outOfOrderMs: 0 });
    await pollUntil(async () => (await results("bad")).length >= 1, { what: "the good readings' result" });
    expect(await results("bad")).toEqual([expect.objectContaining({ key: "bad.d1.temp", start: T0, end: T0 + 10_000, kind: "final", count: 2, sum: 30, max: 20 })]);
    const jsm = await jetstreamManager(nc);
    const rejected = await pollUntil(
      async () => {
        const info = await jsm.streams.info("REJECTED", { subjects_filter: "rejected.telemetry.bad.>" });
        return info.state.messages >= 6 ? info.state.subjects : undefined;
      },
      { what: "six rejections" },
    );
    expect(rejected).toEqual({ "rejected.telemetry.bad.d1.temp": 5, "rejected.telemetry.bad.short": 1 });
    const last = await jsm.streams.getMessage("REJECTED", { last_by_subj: "rejected.telemetry.bad.short" });
    expect(last?.header.get("Fabric-Reject-Reason")).toMatch(/window bad: subject telemetry\.bad\.short has no token 3 for the key/);
    const first = await jsm.streams.getMessage("REJECTED", { last_by_subj: "rejected.telemetry.bad.d1.temp" });
    expect(first?.header.get("Fabric-Reject-Reason")).toMatch(/payload needs numeric value and ts/);
    expect(w.partitions()).toHaveLength(8);
  });

  it("session windows: runs of readings less than the gap apart, each closed by the key's watermark", async () => {
    const at = (s: number, v: number): [string, string] => ["telemetry.sess.d1.temp", JSON.stringify({ ts: T0 + s * 1_000, value: v })];
    await publish([at(0, 1), at(2, 2), at(1, 3), at(20, 4), at(23, 5), at(60, 6)]);
    await worker({ name: "sess", source: { filter: "telemetry.sess.>" }, window: { kind: "session", gapMs: 5_000 }, aggregates: ["count", "sum", "min"], outOfOrderMs: 2_000 });
    await pollUntil(async () => (await results("sess")).length >= 2, { what: "two sessions" });
    const out = await results("sess");
    expect(out).toEqual([
      expect.objectContaining({ start: T0, end: T0 + 7_000, kind: "final", count: 3, sum: 6, min: 1 }),
      expect.objectContaining({ start: T0 + 20_000, end: T0 + 28_000, kind: "final", count: 2, sum: 9, min: 4 }),
    ]);
  });

  it("edge partials merged by a hub definition equal aggregating the raw readings there", async () => {
    const M0 = Math.ceil(T0 / 60_000) * 60_000; // a minute boundary
    const readings: [string, string][] = [];
    const values: number[] = [];
    for (let i = 0; i < 120; i++) {
      const v = ((i * 37) % 41) - 20;
      if (i < 60) values.push(v); // the hub's first minute
      readings.push([`telemetry.edge${i % 2}.d1.temp`, JSON.stringify({ ts: M0 + i * 1_000, value: v })]);
    }
    await publish(readings);
    // two edge sites pre-aggregate 10 s windows of the same device; the hub merges them into 1 min windows
    await worker({ name: "edge", source: { filter: "telemetry.*.d1.temp" }, window: { kind: "tumbling", sizeMs: 10_000 }, aggregates: ["count", "sum", "min", "max", "avg"], outOfOrderMs: 0, idleCloseMs: 1_000, emit: { partials: true } });
    await worker({ name: "merged", source: { stream: "AGGREGATES", filter: "agg.edge.>", partials: true }, key: [3, 4], window: { kind: "tumbling", sizeMs: 60_000 }, aggregates: ["count", "sum", "min", "max", "avg"], outOfOrderMs: 0 });
    await pollUntil(async () => (await results("merged")).some((r) => r["start"] === M0), { what: "the hub's first minute", timeoutMs: 30_000 });
    const minute = (await results("merged")).find((r) => r["start"] === M0);
    const sum = values.reduce((a, b) => a + b, 0);
    expect(minute).toMatchObject({ key: "d1.temp", count: 60, sum, min: Math.min(...values), max: Math.max(...values), avg: sum / 60 });
  });

  it("a wholly silent stream still closes its windows on processing time, and emits count-0 windows where asked", async () => {
    await publish([
      ["telemetry.quiet.d1.temp", JSON.stringify({ ts: T0 + 500, value: 7 })],
      ["telemetry.quiet.d1.temp", JSON.stringify({ ts: T0 + 900, value: 9 })],
    ]);
    // nothing is published after this: only the worker's clock moves on
    await worker({ name: "quiet", source: { filter: "telemetry.quiet.>" }, window: { kind: "tumbling", sizeMs: 1_000 }, aggregates: ["count", "sum"], outOfOrderMs: 0, idleCloseMs: 1_000, emit: { emptyWindows: true, emptyForMs: 3_000 } });
    await pollUntil(async () => (await results("quiet")).length >= 3, { what: "the closed and the empty windows", timeoutMs: 20_000 });
    const out = await results("quiet");
    expect(out[0]).toMatchObject({ start: T0, kind: "final", count: 2, sum: 16 });
    expect(out.slice(1).every((r) => r["count"] === 0 && r["empty"] === true && r["sum"] === 0)).toBe(true);
    expect(out.map((r) => r["start"])).toEqual(out.map((_, i) => T0 + i * 1_000));
    expect(out.length).toBeLessThanOrEqual(4); // at most emptyForMs / size empty windows after the last reading
  });
});
