import type { NatsConnection } from "@nats-io/transport-node";
import { JetStreamPublisher } from "../../fabric/core/index.js";
import { issueUser } from "../../identity/index.js";
import { connectAs, startTestHub, type Harness, type TestHub } from "../harness/index.js";
import type { TestPostgres } from "../harness/postgres.js";

/** The real hub (no workers) and a service connection into its tenant account. */
export async function sinkTestHub(h: Harness): Promise<{ hub: TestHub; nc: NatsConnection }> {
  const hub = await startTestHub(h, { windows: false, identityService: false });
  const nc = await connectAs(hub.urls, issueUser(hub.keystore, { account: "fleet", role: "service", name: "sink-test" }).creds ?? "", { reconnect: true });
  h.defer(() => nc.close());
  return { hub, nc };
}

/** Publishes `n` readings (value = i) to TELEMETRY, pipelined; resolves once all are stored. */
export async function publishReadings(nc: NatsConnection, n: number, t0 = Date.UTC(2024, 5, 1)): Promise<void> {
  const publisher = new JetStreamPublisher(nc);
  try {
    const pending: Promise<unknown>[] = [];
    for (let i = 0; i < n; i++) {
      pending.push(publisher.publish(`telemetry.site-${i % 4}.d${i % 50}.temp`, Buffer.from(JSON.stringify({ value: i, ts: t0 + i * 10 }))));
      if (pending.length >= 2_000) await Promise.all(pending.splice(0));
    }
    await Promise.all(pending);
  } finally {
    publisher.close();
  }
}

export async function rowCount(db: TestPostgres): Promise<number> {
  const [r] = await db.query<{ n: string }>("SELECT count(*) AS n FROM fabric_telemetry").catch(() => [{ n: "0" }]);
  return Number(r?.n ?? 0);
}

/** The table against the stream 1..n: rows, distinct sequences, lowest and highest. */
export async function tableSummary(db: TestPostgres): Promise<{ rows: number; distinct: number; min: number; max: number }> {
  const [r] = await db.query<{ rows: string; distinct: string; min: string; max: string }>('SELECT count(*) AS rows, count(DISTINCT stream_seq) AS "distinct", min(stream_seq) AS min, max(stream_seq) AS max FROM fabric_telemetry');
  return { rows: Number(r?.rows), distinct: Number(r?.distinct), min: Number(r?.min), max: Number(r?.max) };
}
