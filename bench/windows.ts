import { AckPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { JetStreamPublisher, pollUntil } from "../fabric/core/index.js";
import { issueUser } from "../identity/index.js";
import { startWindowWorker, windowDefinitionSchema } from "../streams/index.js";
import { connectAs, startTestHub, testLogger, type Harness } from "../test/harness/index.js";
import { fmt } from "./lib.js";

const EVENTS = 300_000;
const KEYS = 10_000;

export interface WindowsBench {
  raw: number;
  worker: number;
  percentiles: number;
}

/** Events per second through one window worker against a raw callback consume of the same stream, same run. */
export async function benchWindows(h: Harness): Promise<WindowsBench> {
  const hub = await startTestHub(h, { identityService: false });
  const creds = issueUser(hub.keystore, { account: "fleet", role: "service", name: "bench" }).creds ?? "";
  const nc = await connectAs(hub.urls, creds);
  const pub = new JetStreamPublisher(nc);
  const base = 1_700_000_000_000;
  const batch: Promise<unknown>[] = [];
  for (let i = 0; i < EVENTS; i++) {
    const key = i % KEYS;
    batch.push(pub.publish(`telemetry.s${key % 10}.d${key}.temp`, Buffer.from(`{"value":${(i * 7) % 100},"ts":${base + Math.floor(i / KEYS) * 1_000}}`)));
    if (batch.length >= 2_048) await Promise.all(batch.splice(0));
  }
  await Promise.all(batch);
  pub.close();
  const last = (await (await jetstreamManager(nc)).streams.info("TELEMETRY")).state.last_seq;

  // raw: a callback consume of the whole stream with AckAll (an ack every 500), nothing else done per message
  const t0 = performance.now();
  let n = 0;
  const ci = await (await jetstreamManager(nc)).consumers.add("TELEMETRY", { ack_policy: AckPolicy.All, max_ack_pending: 100_000, filter_subject: "telemetry.>", inactive_threshold: 60_000_000_000 });
  const c = await jetstream(nc).consumers.get("TELEMETRY", ci.name);
  const msgs = await c.consume({
    max_messages: 10_000,
    callback: (m) => {
      if (++n % 500 === 0 || n === EVENTS) m.ack();
    },
  });
  await pollUntil(() => n >= EVENTS, { intervalMs: 5, timeoutMs: 120_000, what: "the raw consume" });
  const raw = (EVENTS * 1000) / (performance.now() - t0);
  await msgs.close();

  const run = async (name: string, aggregates: string[], window: object): Promise<number> => {
    const def = windowDefinitionSchema.parse({ name, window, aggregates, outOfOrderMs: 0 });
    const start = performance.now();
    const w = await startWindowWorker({ connection: nc, definition: def, logger: testLogger(), checkpointEveryMs: 1_000 });
    await pollUntil(() => w.position() >= last, { intervalMs: 5, timeoutMs: 300_000, what: `window ${name}` });
    const rate = (EVENTS * 1000) / (performance.now() - start);
    await w.stop();
    return rate;
  };
  const worker = await run("bench-10s", ["count", "sum", "min", "max", "avg"], { kind: "tumbling", sizeMs: 10_000 });
  const percentiles = await run("bench-p", ["count", "sum", "min", "max", "avg", "p50", "p99"], { kind: "tumbling", sizeMs: 10_000 });
  await nc.close();
  return { raw, worker, percentiles };
}

export function windowsMarkdown(r: WindowsBench): string {
  const ok = r.worker >= 0.6 * r.raw && r.worker >= 150_000;
  return [
    "| path | events/s | vs raw consume |",
    "| --- | ---: | ---: |",
    `| raw JetStream callback consume (no work per message) | ${fmt(r.raw)} | 1× |`,
    `| window worker: 10 s tumbling, count/sum/min/max/avg, 10 000 keys | ${fmt(r.worker)} | ${fmt(r.worker / r.raw, 2)}× |`,
    `| the same with p50 and p99 | ${fmt(r.percentiles)} | ${fmt(r.percentiles / r.raw, 2)}× |`,
    "",
    `Goal (issue 4: at least 60 % of raw and 150 000 events/s): ${ok ? "**met**" : "**not met**"}. The worker includes its checkpoints (each second) and publishing the results.`,
  ].join("\n");
}
