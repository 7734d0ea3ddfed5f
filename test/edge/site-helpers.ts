import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager, type StreamSource } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { JetStreamPublisher, pollUntil } from "../../fabric/core/index.js";
import { connectWithCreds, deviceInboxPrefix, issueUser, type Keystore } from "../../identity/index.js";
import { startEdge, type EdgeOptionsInput, type RunningEdge } from "../../edge/index.js";
import { connectAs, startTcpProxy, testLogger, type Harness, type TcpProxy, type TestHub } from "../harness/index.js";

export interface TestSite {
  site: string;
  dataDir: string;
  credsFile: string;
  proxy: TcpProxy;
  edge: RunningEdge;
  /** Stops the agent and starts it again on the same data (the hub may be away meanwhile). */
  restart(): Promise<RunningEdge>;
}

/** Writes a site's leaf credential (0600) into a temp dir. */
export async function leafCredsFile(h: Harness, ks: Keystore, site: string): Promise<string> {
  const leaf = await ks.withLock(() => issueUser(ks, { account: "fleet", role: "leaf", name: site, site }));
  const file = join(h.tempDir("fabric-leaf-"), `${site}.creds`);
  writeFileSync(file, leaf.creds ?? "", { mode: 0o600 });
  return file;
}

/** A site whose leaf reaches the hub through a proxy the test controls; stopped on dispose. */
export async function startTestSite(h: Harness, hub: TestHub, site: string, options: Partial<EdgeOptionsInput> = {}): Promise<TestSite> {
  const credsFile = await leafCredsFile(h, hub.keystore, site);
  const proxy = await startTcpProxy(hub.nodes[0]?.ports.leafnode ?? 0);
  h.defer(() => proxy.close());
  const dataDir = join(h.tempDir("fabric-edge-"), "data");
  const input: EdgeOptionsInput = {
    site,
    hub: [`nats-leaf://127.0.0.1:${proxy.port}`],
    creds: credsFile,
    dataDir,
    host: "127.0.0.1",
    port: 0,
    monitorPort: 0,
    buffer: { bytes: 256 * 1024 * 1024, maxAgeMs: 3_600_000 },
    reportEveryMs: 500,
    startTrustTimeoutMs: 1_500,
    ...options,
  };
  let edge = await startEdge(input, testLogger());
  let stopped = false;
  h.defer(() => (stopped ? undefined : edge.stop()));
  const s: TestSite = {
    site,
    dataDir,
    credsFile,
    proxy,
    edge,
    restart: async () => {
      stopped = true;
      await edge.stop();
      edge = await startEdge(input, testLogger());
      stopped = false;
      s.edge = edge;
      return edge;
    },
  };
  return s;
}

/** A site caught up with the hub, and a device `d1` connected to it. */
export async function linkedSite(h: Harness, hub: TestHub, site: string, options: Partial<EdgeOptionsInput> = {}): Promise<{ s: TestSite; dev: Awaited<ReturnType<typeof siteDevice>> }> {
  const s = await startTestSite(h, hub, site, options);
  await s.edge.caughtUp();
  return { s, dev: await siteDevice(hub, s.edge, "d1") };
}

/** Rewrites (or, on undefined, drops) the site's entry among the hub's TELEMETRY sources, as an older hub or an operator might have it. */
export async function withTelemetryEntry(nc: NatsConnection, site: string, f: (e: StreamSource) => StreamSource | undefined): Promise<void> {
  const jsm = await jetstreamManager(nc);
  const c = (await jsm.streams.info("TELEMETRY")).config;
  const sources = (c.sources ?? []).flatMap((x) => (x.external?.api === `$JS.${site}.API` ? [f(x)].filter((y) => y !== undefined) : [x]));
  await jsm.streams.update("TELEMETRY", { ...c, sources });
}

/** Waits until the site sees its link to the hub down. */
export async function linkDown(edge: RunningEdge, timeoutMs = 10_000): Promise<void> {
  await pollUntil(() => (edge.linkUp() ? undefined : true), { timeoutMs, intervalMs: 50, what: `site ${edge.site} to see its link down` });
}

/** A device of the site, connected to the site's server. */
export async function siteDevice(hub: TestHub, edge: RunningEdge, device: string): Promise<{ nc: NatsConnection; creds: string; publicKey: string }> {
  const d = await hub.keystore.withLock(() => issueUser(hub.keystore, { account: "fleet", role: "device", name: device, site: edge.site }));
  const creds = d.creds ?? "";
  const nc = await connectWithCreds(creds, { servers: edge.url, inboxPrefix: deviceInboxPrefix(edge.site, device), name: device });
  return { nc, creds, publicKey: d.record.publicKey };
}

/** Publishes readings `from..to-1` (payload `{"i": n}`) and waits for each to be stored (replies on the connection's inboxes). */
export async function publishSeq(nc: NatsConnection, subject: string, from: number, to: number): Promise<void> {
  const pub = new JetStreamPublisher(nc);
  const acks: Promise<unknown>[] = [];
  for (let i = from; i < to; i++) acks.push(pub.publish(subject, Buffer.from(JSON.stringify({ i, value: i, ts: Date.now() }))));
  await Promise.all(acks);
  pub.close();
}

/** A hub connection as a service. */
export async function hubService(h: Harness, hub: TestHub): Promise<NatsConnection> {
  const svc = issueUser(hub.keystore, { account: "fleet", role: "service", name: "svc", ephemeral: true });
  const nc = await connectAs(hub.urls, svc.creds ?? "", { reconnect: true });
  h.defer(() => nc.close());
  return nc;
}

/** How many messages a hub stream holds on a subject. */
export async function hubCount(nc: NatsConnection, stream: string, subject: string): Promise<number> {
  const jsm = await jetstreamManager(nc);
  const info = await jsm.streams.info(stream, { subjects_filter: subject });
  return Object.values(info.state.subjects ?? {}).reduce((a, b) => a + b, 0);
}

/**
 * Waits until the hub holds `n` messages on the subject (never more), then reads their `i` in stream order. The
 * wait is long: once in a while nats-server's sourcing takes 30 s or more to resume after a fault (see the README);
 * these tests are about what arrives, the edge benchmark about how soon.
 */
export async function hubSequence(nc: NatsConnection, stream: string, subject: string, n: number, timeoutMs = 50_000): Promise<number[]> {
  await pollUntil(async () => ((await hubCount(nc, stream, subject)) >= n ? true : undefined), { timeoutMs, intervalMs: 50, what: `${n} messages on ${subject} at the hub` });
  const jsm = await jetstreamManager(nc);
  const ci = await jsm.consumers.add(stream, { filter_subject: subject, ack_policy: AckPolicy.None, deliver_policy: DeliverPolicy.All, mem_storage: true, inactive_threshold: 10_000_000_000 });
  try {
    const c = await jetstream(nc).consumers.get(stream, ci.name);
    const out: number[] = [];
    let left = await hubCount(nc, stream, subject);
    while (left > 0) {
      for await (const m of await c.fetch({ max_messages: Math.min(left, 5_000), expires: 2_000 })) {
        out.push(m.json<{ i: number }>().i);
        left--;
      }
    }
    return out;
  } finally {
    await jsm.consumers.delete(stream, ci.name).catch(() => undefined);
  }
}

export const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);
