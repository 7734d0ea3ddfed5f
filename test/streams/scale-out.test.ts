import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { JetStreamPublisher, pollUntil } from "../../fabric/core/index.js";
import { removeDefinition, saveDefinition, startWindowWorker, windowDefinitionSchema, type WindowDefinitionInput } from "../../streams/index.js";
import { Harness, startCli, testLogger, type RunningCli, type TestHub } from "../harness/index.js";
import { partitionsOf, reading, windowOutputs, windowTestHub } from "./window-helpers.js";

const h = new Harness();
let hub: TestHub;
let nc: NatsConnection;
afterAll(() => h.dispose());
beforeAll(async () => {
  ({ hub, nc } = await windowTestHub(h));
});

const definition = (name: string, partitions: number): WindowDefinitionInput => ({
  name,
  window: { kind: "tumbling", sizeMs: 10_000 },
  aggregates: ["count", "sum", "min", "max", "avg", "stddev", "p50"],
  outOfOrderMs: 2_000,
  allowedLatenessMs: 15_000,
  partitions,
});

const spawned: RunningCli[] = [];
afterAll(() => {
  if (process.env["DEBUG_WORKERS"] !== undefined) for (const w of spawned) console.log(w.stderr().slice(-6000));
});
/** A `fabric worker` process against the test hub. */
function worker(member: string): RunningCli {
  const w = startCli("fabric", ["worker", "--store", hub.keystoreDir, "--data", hub.dataDir, "--server", ...hub.urls, "--member", member, "--checkpoint-every-ms", "100"]);
  spawned.push(w);
  h.defer(async () => {
    await w.signal("SIGKILL");
  });
  return w;
}

/**
 * Publishes `events` readings of `keys` devices at about `perSecond`, then one reading per key far ahead in
 * event time, which closes every window; resolves with the stream's last sequence.
 */
async function publish(from: number, events: number, keys: number, perSecond: number): Promise<number> {
  const pub = new JetStreamPublisher(nc);
  const started = performance.now();
  for (let i = from; i < from + events; i += 1_000) {
    const batch: Promise<unknown>[] = [];
    for (let j = i; j < Math.min(i + 1_000, from + events); j++) {
      const r = reading(j, keys);
      batch.push(pub.publish(r.subject, Buffer.from(r.body)));
    }
    await Promise.all(batch);
    const due = ((i - from + 1_000) / perSecond) * 1_000;
    const ahead = due - (performance.now() - started);
    if (ahead > 0) await new Promise((r) => setTimeout(r, ahead));
  }
  const closing: Promise<unknown>[] = [];
  for (let k = 0; k < keys; k++) {
    closing.push(pub.publish(`telemetry.s${k % 5}.d${k}.temp`, Buffer.from(JSON.stringify({ value: 0, ts: 1_700_000_000_000 + 10_000_000 }))));
  }
  await Promise.all(closing);
  pub.close();
  return (await (await jetstreamManager(nc)).streams.info("TELEMETRY")).state.last_seq;
}

/** The same definition under another name, run in this process from the start of the stream without faults. */
async function faultFreeRun(input: WindowDefinitionInput, last: number): Promise<string[]> {
  const w = await startWindowWorker({ connection: nc, definition: windowDefinitionSchema.parse(input), logger: testLogger(), checkpointEveryMs: 1_000 });
  await pollUntil(() => w.position() >= last, { what: `the fault-free run of ${input.name}`, timeoutMs: 120_000 });
  await w.stop();
  return windowOutputs(nc, input.name);
}

const minimum = (xs: number[]): number => Math.min(...xs);
const positions = async (name: string): Promise<number[]> => (await partitionsOf(nc, name)).seqs;
const owners = async (name: string): Promise<string[]> => (await partitionsOf(nc, name)).owners;

describe("window workers as processes: crashes and scale-out", () => {
  it("SIGKILLed repeatedly during 100 000 events, the workers' AGGREGATES equal a fault-free run's exactly", async () => {
    const KEYS = 250;
    const EVENTS = 100_000;
    await saveDefinition(nc, definition("crash", 4));
    let w = worker("crashy");
    let publishing = true;
    const published = publish(0, EVENTS, KEYS, 6_000).finally(() => (publishing = false));
    let kills = 0;
    // kill it each time it has made progress, at whatever point of its publish-then-checkpoint cycle that is
    while (publishing) {
      const before = minimum(await positions("crash"));
      const moved = await pollUntil(async () => (minimum(await positions("crash")) > before ? true : publishing ? undefined : false), { intervalMs: 37, timeoutMs: 30_000, what: "worker progress" });
      if (!moved) break;
      await w.signal("SIGKILL");
      kills++;
      w = worker("crashy");
    }
    const last = await published;
    await pollUntil(async () => minimum(await positions("crash")) >= last, { intervalMs: 100, timeoutMs: 60_000, what: "the crashed worker to catch up" });
    await pollUntil(() => w.stderr().includes("window workers running"), { what: "the last worker to be up" });
    expect(await w.signal("SIGTERM")).toBe(0);
    await removeDefinition(nc, "crash");
    expect(kills).toBeGreaterThanOrEqual(5);

    const clean = await faultFreeRun(definition("crash-ref", 4), last);
    const kinds = clean.map((s) => (JSON.parse(s) as { kind: string }).kind);
    expect(kinds.filter((k) => k === "final").length).toBeGreaterThanOrEqual(KEYS * 40);
    expect(kinds.filter((k) => k === "revision").length).toBeGreaterThan(0);
    const crashed = await windowOutputs(nc, "crash");
    expect(crashed.length).toBe(clean.length);
    expect(crashed).toEqual(clean);
  });

  it("two workers share the partitions; when one is killed the other takes its partitions within seconds and totals stay exact", async () => {
    const KEYS = 100;
    const EVENTS = 50_000;
    await saveDefinition(nc, definition("pair", 8));
    const a = worker("a");
    worker("b");
    const first = (await (await jetstreamManager(nc)).streams.info("TELEMETRY")).state.last_seq;
    const split = await pollUntil(
      async () => {
        const held = await owners("pair");
        return held.filter((o) => o === "a").length === 4 && held.filter((o) => o === "b").length === 4 ? held : undefined;
      },
      { what: "the partitions split 4/4", timeoutMs: 20_000 },
    );
    expect(split.sort()).toEqual(["a", "a", "a", "a", "b", "b", "b", "b"]);
    let publishing = true;
    const published = publish(200_000, EVENTS, KEYS, 5_000).finally(() => (publishing = false));
    await pollUntil(async () => minimum(await positions("pair")) > first + EVENTS / 4, { what: "a quarter of the input", timeoutMs: 30_000 });
    expect(publishing).toBe(true);
    await a.signal("SIGKILL");
    const killedAt = performance.now();
    await pollUntil(async () => (await owners("pair")).every((o) => o === "b"), { intervalMs: 50, timeoutMs: 20_000, what: "b to own every partition" });
    const handOverMs = performance.now() - killedAt;
    expect(handOverMs).toBeLessThan(10_000);

    const last = await published;
    await pollUntil(async () => minimum(await positions("pair")) >= last, { intervalMs: 100, timeoutMs: 60_000, what: "b to catch up" });
    const clean = await faultFreeRun(definition("pair-ref", 8), last);
    expect(clean.length).toBeGreaterThanOrEqual(KEYS * 40);
    expect(await windowOutputs(nc, "pair")).toEqual(clean);
  });
});
