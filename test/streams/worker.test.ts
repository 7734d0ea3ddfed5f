import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jetstreamManager } from "@nats-io/jetstream";
import { JetStreamPublisher, pollUntil } from "../../fabric/core/index.js";
import { issueUser } from "../../identity/index.js";
import { startWindowWorker, windowDefinitionSchema } from "../../streams/index.js";
import { connectAs, Harness, startTestHub, testLogger, type TestHub } from "../harness/index.js";
import { windowOutputs } from "./window-helpers.js";

const h = new Harness();
let hub: TestHub;
let creds: string;
afterAll(() => h.dispose());
beforeAll(async () => {
  hub = await startTestHub(h);
  creds = issueUser(hub.keystore, { account: "fleet", role: "service", name: "windows" }).creds ?? "";
});

const KEYS = 20;
const EVENTS = 4_000;

/** Readings of KEYS devices, 1 a second each in event time, some of them out of order. */
async function publishReadings(): Promise<void> {
  const nc = await connectAs(hub.urls, creds);
  const pub = new JetStreamPublisher(nc);
  const all: Promise<unknown>[] = [];
  for (let i = 0; i < EVENTS; i++) {
    const dev = i % KEYS;
    const ts = 1_700_000_000_000 + Math.floor(i / KEYS) * 1_000 - (i % 13 === 0 ? 1_500 : 0);
    all.push(pub.publish(`telemetry.site.d${dev}.temp`, Buffer.from(JSON.stringify({ value: ((i * 31) % 97) - 40, ts }))));
  }
  all.push(pub.publish("telemetry.site.bad.temp", Buffer.from("not json")));
  await Promise.all(all);
  pub.close();
  await nc.close();
}

/** What a window wrote to AGGREGATES, without its name, sorted. */
async function outputs(name: string): Promise<string[]> {
  const nc = await connectAs(hub.urls, creds);
  try {
    return await windowOutputs(nc, name);
  } finally {
    await nc.close();
  }
}

const def = (name: string) =>
  windowDefinitionSchema.parse({ name, window: { kind: "tumbling", sizeMs: 10_000 }, aggregates: ["count", "sum", "min", "max", "avg"], outOfOrderMs: 2_000, allowedLatenessMs: 0 });

describe("window worker on JetStream", () => {
  it("a worker killed mid-run and resumed from its checkpoint writes exactly what an uninterrupted one does", async () => {
    await publishReadings();
    const expectedWindows = KEYS * (Math.floor(EVENTS / KEYS / 10) - 1);

    // the uninterrupted run
    const nc1 = await connectAs(hub.urls, creds);
    const whole = await startWindowWorker({ connection: nc1, definition: def("clean"), logger: testLogger(), checkpointEveryMs: 50 });
    await pollUntil(async () => (await outputs("clean")).length >= expectedWindows, { what: "the uninterrupted run's results", timeoutMs: 30_000 });
    await whole.stop();
    await nc1.close();

    // the same, killed when about half the input is in (its connection cut: no last checkpoint), then resumed
    const nc2 = await connectAs(hub.urls, creds);
    const first = await startWindowWorker({ connection: nc2, definition: def("crashy"), logger: testLogger(), checkpointEveryMs: 50 });
    await pollUntil(() => first.position() >= EVENTS / 2, { what: "half the input", timeoutMs: 30_000 });
    await nc2.close();
    const nc3 = await connectAs(hub.urls, creds);
    const resumed = await startWindowWorker({ connection: nc3, definition: def("crashy"), logger: testLogger(), checkpointEveryMs: 50 });
    await pollUntil(async () => (await outputs("crashy")).length >= expectedWindows, { what: "the resumed run's results", timeoutMs: 30_000 });
    await resumed.stop();
    await nc3.close();

    const clean = await outputs("clean");
    expect(clean.length).toBeGreaterThanOrEqual(expectedWindows);
    expect(await outputs("crashy")).toEqual(clean);
  });

  it("routes a payload without value or ts to REJECTED with the reason", async () => {
    const nc = await connectAs(hub.urls, creds);
    const info = await (await jetstreamManager(nc)).streams.info("REJECTED", { subjects_filter: "rejected.telemetry.site.bad.temp" });
    expect(info.state.messages).toBeGreaterThanOrEqual(1);
    const m = await (await jetstreamManager(nc)).streams.getMessage("REJECTED", { last_by_subj: "rejected.telemetry.site.bad.temp" });
    expect(m?.header.get("Fabric-Reject-Reason")).toMatch(/payload needs numeric value and ts/);
    await nc.close();
  });
});
