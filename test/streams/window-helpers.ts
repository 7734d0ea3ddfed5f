import { AckPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { issueUser } from "../../identity/index.js";
import { connectAs, startTestHub, type Harness, type TestHub } from "../harness/index.js";
import { listDefinitions, windowStatus } from "../../streams/index.js";

/** What a window wrote to AGGREGATES, without its name, sorted (through an ephemeral consumer, deleted after). */
export async function windowOutputs(nc: NatsConnection, name: string): Promise<string[]> {
  const subject = `agg.${name}.>`;
  const jsm = await jetstreamManager(nc);
  const info = await jsm.streams.info("AGGREGATES", { subjects_filter: subject });
  let left = Object.values(info.state.subjects ?? {}).reduce((a, b) => a + b, 0);
  if (left === 0) return [];
  const ci = await jsm.consumers.add("AGGREGATES", { filter_subject: subject, ack_policy: AckPolicy.None, mem_storage: true, inactive_threshold: 10_000_000_000 });
  try {
    const c = await jetstream(nc).consumers.get("AGGREGATES", ci.name);
    const out: string[] = [];
    while (left > 0) {
      for await (const m of await c.fetch({ max_messages: Math.min(left, 5_000), expires: 2_000 })) {
        const { window: _w, ...rest } = m.json<Record<string, unknown>>();
        out.push(JSON.stringify(rest));
        left--;
      }
    }
    return out.sort();
  } finally {
    await jsm.consumers.delete("AGGREGATES", ci.name).catch(() => undefined);
  }
}

/** The input position of each partition's checkpoint (0 for none yet), and the member holding each lease. */
export async function partitionsOf(nc: NatsConnection, name: string): Promise<{ seqs: number[]; owners: string[] }> {
  const def = (await listDefinitions(nc)).find((d) => d.name === name);
  if (def === undefined) throw new Error(`no window ${name}`);
  const status = await windowStatus(nc, def);
  return { seqs: status.partitions.map((p) => p.seq), owners: status.partitions.map((p) => p.owner) };
}

/** Readings of `keys` devices over 5 sites, one a second each in event time, some out of order, some late. */
export function reading(i: number, keys: number): { subject: string; body: string } {
  const dev = i % keys;
  const round = Math.floor(i / keys);
  let ts = 1_700_000_000_000 + round * 1_000;
  if (i % 13 === 0) ts -= 1_500; // out of order, within the bound
  if (i % 101 === 0) ts -= 12_000; // behind the watermark: a revision or, past the lateness, late
  if (i % 997 === 0) ts -= 40_000; // far behind: late
  const value = ((i * 31) % 97) - 40;
  return { subject: `telemetry.s${dev % 5}.d${dev}.temp`, body: JSON.stringify({ value, ts }) };
}

/** A hub without window workers of its own (the tests run theirs), and a service connection into it. */
export async function windowTestHub(h: Harness): Promise<{ hub: TestHub; nc: NatsConnection }> {
  const hub = await startTestHub(h, { windows: false, identityService: false });
  const nc = await connectAs(hub.urls, issueUser(hub.keystore, { account: "fleet", role: "service", name: "windows" }).creds ?? "");
  h.defer(() => nc.close());
  return { hub, nc };
}
