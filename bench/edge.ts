import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager, type StreamConfig } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { JetStreamPublisher, pollUntil, spawnNatsServer } from "../fabric/core/index.js";
import { addRole, issueUser, pushAccounts, SYSTEM_ACCOUNT_NAME, type Keystore } from "../identity/index.js";
import { edgeStreamConfig, writeEdgeServerConfig, EDGE_STREAMS } from "../leafnode-config/index.js";
import { connectAs, startTcpProxy, startTestHub, type Harness, type TcpProxy, type TestHub } from "../test/harness/index.js";
import { hubCount, hubService, siteDevice, startTestSite } from "../test/edge/site-helpers.js";
import { fmt, percentile } from "./lib.js";

const BACKLOG = 100_000;
const PAYLOAD = 100;
const OUTAGE_MS = 12_000;
const SMALL = 1_000;
const LATENCY_RATE = 1_000;
const LATENCY_SECONDS = 10;

export interface DrainRun {
  /** From the link restored to the first buffered message stored at the hub. */
  firstMs: number;
  /** From the link restored to the whole backlog stored at the hub. */
  drainedMs: number;
  /** Messages per second while draining (first to last). */
  rate: number;
}

export interface EdgeBench {
  fabric: DrainRun;
  anchor: DrainRun;
  /** The hub's own JetStream ingest, pipelined publishes from one client, same run. */
  rawIngest: number;
  /** Link restored after a 12 s outage → first message at the hub (ms). */
  outage: { fabric: number; anchor: number };
  /** The fabric's site over repeated outages (3 s and 12 s): link restored → flowing, ms, sorted. */
  outages: number[];
  /** The hub's server killed and restarted by its supervisor → first new message at the hub (ms). */
  hubRestart: { fabric: number; anchor: number };
  latency: { p50: number; p99: number };
  /** Bytes over the WAN link (both ways) to bring the same readings' information to the hub. */
  wan: { readings: number; raw: number; preAggregated: number; partials: number };
}

/** 100-byte JSON payloads; `ts` is the send time (performance.timeOrigin + now). */
function payload(i: number): Buffer {
  const b = Buffer.alloc(PAYLOAD, 32);
  b.write(JSON.stringify({ i, ts: performance.timeOrigin + performance.now() }));
  return b;
}

async function publishN(nc: NatsConnection, subject: string, from: number, n: number): Promise<void> {
  const pub = new JetStreamPublisher(nc);
  const batch: Promise<unknown>[] = [];
  for (let i = from; i < from + n; i++) {
    batch.push(pub.publish(subject, payload(i)));
    if (batch.length >= 2_048) await Promise.all(batch.splice(0));
  }
  await Promise.all(batch);
  pub.close();
}

/** Waits for the hub to hold `n` messages on the subject; the times of the first and the last (ms from `t0`). */
async function watchDrain(svc: NatsConnection, subject: string, n: number, t0: number): Promise<DrainRun> {
  let first = -1;
  await pollUntil(
    async () => {
      const c = await hubCount(svc, "TELEMETRY", subject);
      if (c > 0 && first < 0) first = performance.now() - t0;
      return c >= n ? true : undefined;
    },
    { timeoutMs: 300_000, intervalMs: 10, what: `${n} messages on ${subject} at the hub` },
  );
  const drainedMs = performance.now() - t0;
  return { firstMs: first, drainedMs, rate: (n * 1000) / Math.max(1, drainedMs - first) };
}

/** Time from `t0` until the hub holds more than `before` messages on the subject. */
async function flowingAfter(svc: NatsConnection, subject: string, before: number, t0: number): Promise<number> {
  await pollUntil(async () => ((await hubCount(svc, "TELEMETRY", subject).catch(() => 0)) > before ? true : undefined), { timeoutMs: 180_000, intervalMs: 10, what: `${subject} flowing` });
  return performance.now() - t0;
}

interface PlainSite {
  proxy: TcpProxy;
  nc: NatsConnection;
}

/**
 * The anchor: a site as nats-server does it by default — the same edge config and stream, the hub sourcing it
 * through an ephemeral consumer it creates (the default source, deliver prefix `$FABRIC.src.<site>.eph`). The
 * leaf credential is the fabric's least-privilege one widened by what the default source needs: its flow
 * control answers come on `$JS.FC.<stream>.<random consumer>.>`, which no site-scoped permission can name.
 */
async function startPlainSite(h: Harness, hub: TestHub, site: string): Promise<PlainSite> {
  const ks: Keystore = hub.keystore;
  const role = "leaf-default-source";
  if (ks.account("fleet").roles[role] === undefined) {
    await ks.withLock(() =>
      addRole(ks, "fleet", {
        name: role,
        pub: ["$FABRIC.src.{{tag(site)}}.>", "$FABRIC.edge.{{tag(site)}}.>", "_INBOX.{{tag(site)}}.>", "$JSC.R.>"],
        sub: ["$JS.{{tag(site)}}.API.>", "$JS.FC.>", "_INBOX.{{tag(site)}}.>"],
        siteScoped: true,
      }),
    );
    await pushAccounts(ks, { servers: hub.urls, accounts: ["fleet"] });
  }
  const dir = h.tempDir("fabric-bench-plain-");
  const creds = join(dir, "leaf.creds");
  writeFileSync(creds, issueUser(ks, { account: "fleet", role, name: site, site }).creds ?? "", { mode: 0o600 });
  const proxy = await startTcpProxy(hub.nodes[0]?.ports.leafnode ?? 0);
  h.defer(() => proxy.close());
  const sys = ks.account(SYSTEM_ACCOUNT_NAME);
  const fleet = ks.account("fleet");
  const configFile = join(dir, "edge.conf");
  writeEdgeServerConfig(configFile, {
    site,
    hub: { urls: [`nats-leaf://127.0.0.1:${proxy.port}`], creds },
    trust: { operatorJwt: ks.operatorJwt(), systemAccount: sys.publicKey, account: fleet.publicKey, accounts: { [sys.publicKey]: ks.accountJwt(SYSTEM_ACCOUNT_NAME), [fleet.publicKey]: ks.accountJwt("fleet") } },
    listen: { host: "127.0.0.1", port: -1, monitorPort: -1 },
    storeDir: join(dir, "js"),
    resolverDir: join(dir, "jwt"),
    portsDir: dir,
    maxFileStoreBytes: 1024 ** 3,
  });
  const server = await spawnNatsServer({ configFile, portsDir: dir, logFile: join(dir, "nats-server.log") });
  h.defer(() => server.stop());
  const svc = issueUser(ks, { account: "fleet", role: "service", name: `${site}-local`, ephemeral: true });
  const nc = await connectAs(server.url, svc.creds ?? "", { reconnect: true });
  h.defer(() => nc.close());
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add(edgeStreamConfig(site, "telemetry", { bytes: 1024 ** 3, maxAgeMs: 86_400_000 }) as Partial<StreamConfig> & { name: string });
  const hjsm = await jetstreamManager(await hubService(h, hub));
  const c = (await hjsm.streams.info("TELEMETRY")).config;
  await hjsm.streams.update("TELEMETRY", { ...c, sources: [...(c.sources ?? []), { name: EDGE_STREAMS.telemetry.edge, external: { api: `$JS.${site}.API`, deliver: `$FABRIC.src.${site}.eph` } }] });
  return { proxy, nc };
}

/** One backlog of BACKLOG messages built while the link is cut, then drained once it is restored. */
async function drainRun(svc: NatsConnection, proxy: TcpProxy, publisher: NatsConnection, subject: string): Promise<DrainRun> {
  proxy.cut();
  await new Promise((r) => setTimeout(r, 500));
  await publishN(publisher, subject, 0, BACKLOG);
  const t0 = performance.now();
  proxy.restore();
  return watchDrain(svc, subject, BACKLOG, t0);
}

async function latencyRun(svc: NatsConnection, device: NatsConnection, subject: string): Promise<{ p50: number; p99: number }> {
  const jsm = await jetstreamManager(svc);
  const ci = await jsm.consumers.add("TELEMETRY", { filter_subject: subject, ack_policy: AckPolicy.None, deliver_policy: DeliverPolicy.New, mem_storage: true, inactive_threshold: 60_000_000_000 });
  const lat: number[] = [];
  const consumer = await jetstream(svc).consumers.get("TELEMETRY", ci.name);
  const msgs = await consumer.consume({
    callback: (m) => {
      lat.push(performance.timeOrigin + performance.now() - m.json<{ ts: number }>().ts);
    },
  });
  const pub = new JetStreamPublisher(device);
  const start = performance.now();
  const acks: Promise<unknown>[] = [];
  for (let tick = 0; tick < LATENCY_SECONDS * 100; tick++) {
    for (let i = 0; i < LATENCY_RATE / 100; i++) acks.push(pub.publish(subject, payload(tick * 100 + i)));
    const ahead = start + (tick + 1) * 10 - performance.now();
    if (ahead > 0) await new Promise((r) => setTimeout(r, ahead));
  }
  await Promise.all(acks);
  pub.close();
  await pollUntil(() => (lat.length >= LATENCY_RATE * LATENCY_SECONDS ? true : undefined), { timeoutMs: 30_000, what: "every latency sample" });
  await msgs.close();
  return { p50: percentile(lat, 50), p99: percentile(lat, 99) };
}

export async function benchEdge(h: Harness): Promise<EdgeBench> {
  const hub = await startTestHub(h, { windows: false });
  const svc = await hubService(h, hub);
  const site = await startTestSite(h, hub, "bench-durable", { buffer: { bytes: 1024 ** 3, maxAgeMs: 86_400_000 } });
  await site.edge.caughtUp();
  const dev = await siteDevice(hub, site.edge, "d1");
  const plain = await startPlainSite(h, hub, "bench-default");
  const anchorPub = plain.nc;

  // the hub's raw ingest, same run
  const t = performance.now();
  await publishN(svc, "telemetry.bench-raw.d1.x", 0, BACKLOG);
  const rawIngest = (BACKLOG * 1000) / (performance.now() - t);

  console.log("edge: drain of 100 000 buffered messages, durable source (fabric) and default source (anchor)…");
  const fabric = await drainRun(svc, site.proxy, dev.nc, "telemetry.bench-durable.d1.drain");
  const anchor = await drainRun(svc, plain.proxy, anchorPub, "telemetry.bench-default.d1.drain");

  console.log("edge: 12 s outages…");
  const outage = { fabric: 0, anchor: 0 };
  for (const [key, proxy, nc, subject] of [
    ["fabric", site.proxy, dev.nc, "telemetry.bench-durable.d1.outage"],
    ["anchor", plain.proxy, anchorPub, "telemetry.bench-default.d1.outage"],
  ] as const) {
    proxy.cut();
    await new Promise((r) => setTimeout(r, OUTAGE_MS));
    await publishN(nc, subject, 0, SMALL);
    const t0 = performance.now();
    proxy.restore();
    outage[key] = await flowingAfter(svc, subject, 0, t0);
  }

  console.log("edge: repeated outages of the fabric's site…");
  const outages: number[] = [];
  for (const [i, ms] of [3_000, 3_000, 3_000, 3_000, 12_000, 12_000].entries()) {
    const subject = `telemetry.bench-durable.d1.again${i}`;
    site.proxy.cut();
    await new Promise((r) => setTimeout(r, ms));
    await publishN(dev.nc, subject, 0, SMALL);
    const t0 = performance.now();
    site.proxy.restore();
    outages.push(await flowingAfter(svc, subject, 0, t0));
  }
  outages.sort((a, b) => a - b);

  console.log("edge: hub restarts…");
  const hubRestart = { fabric: 0, anchor: 0 };
  for (const [key, nc, subject] of [
    ["fabric", dev.nc, "telemetry.bench-durable.d1.restart"],
    ["anchor", anchorPub, "telemetry.bench-default.d1.restart"],
  ] as const) {
    const pid = hub.serverPids()[0] ?? 0;
    process.kill(pid, "SIGKILL");
    const t0 = performance.now();
    await pollUntil(() => ((hub.serverPids()[0] ?? pid) !== pid ? true : undefined), { timeoutMs: 30_000, what: "the hub's restart" });
    await publishN(nc, subject, 0, SMALL);
    hubRestart[key] = await flowingAfter(svc, subject, 0, t0);
  }

  console.log("edge: WAN bytes with and without pre-aggregation…");
  const wan = await wanRun(h, hub, svc);

  console.log("edge: latency at 1 000 msg/s…");
  const latency = await latencyRun(svc, dev.nc, "telemetry.bench-durable.d1.live");
  await dev.nc.close();
  return { fabric, anchor, rawIngest, outage, outages, hubRestart, latency, wan };
}

const WAN_DEVICES = 50;
const WAN_SECONDS = 600;
const WAN_WINDOW = { name: "edge-10s", window: { kind: "tumbling", sizeMs: 10_000 }, aggregates: ["count", "sum", "min", "max", "avg"], outOfOrderMs: 0, idleCloseMs: 1_000 };

/** The same 10 minutes of readings (50 devices, 1 Hz, event time in the past) buffered at a site. */
async function publishReadings(nc: NatsConnection, site: string): Promise<void> {
  const t0 = Math.floor(Date.now() / 10_000) * 10_000 - (WAN_SECONDS + 60) * 1_000;
  const pub = new JetStreamPublisher(nc);
  const batch: Promise<unknown>[] = [];
  for (let s = 0; s < WAN_SECONDS; s++) {
    for (let d = 0; d < WAN_DEVICES; d++) {
      batch.push(pub.publish(`telemetry.${site}.dev${d}.temp`, Buffer.from(JSON.stringify({ value: 20 + ((d + s) % 10) / 10, ts: t0 + s * 1_000 }))));
      if (batch.length >= 2_048) await Promise.all(batch.splice(0));
    }
  }
  await Promise.all(batch);
  pub.close();
}

/**
 * WAN bytes: the same readings buffered at two sites while their links are cut, one shipping raw telemetry, one
 * its 10 s partials only; the proxy counts what crosses from the link's return until the hub has it all.
 */
async function wanRun(h: Harness, hub: TestHub, svc: NatsConnection): Promise<EdgeBench["wan"]> {
  const readings = WAN_DEVICES * WAN_SECONDS;
  const raw = await startTestSite(h, hub, "wan-raw", { buffer: { bytes: 1024 ** 3, maxAgeMs: 86_400_000 } });
  const pre = await startTestSite(h, hub, "wan-pre", { buffer: { bytes: 1024 ** 3, maxAgeMs: 86_400_000 }, preAggregate: [WAN_WINDOW], shipRawTelemetry: false });
  await raw.edge.caughtUp();
  await pre.edge.caughtUp();
  const out = { readings, raw: 0, preAggregated: 0, partials: 0 };
  for (const s of [raw, pre]) {
    // a gateway at the site publishing for its devices (a service credential: a device may publish only its own)
    const local = await connectAs(s.edge.url, issueUser(hub.keystore, { account: "fleet", role: "service", name: `${s.site}-gw`, ephemeral: true }).creds ?? "");
    s.proxy.cut();
    await new Promise((r) => setTimeout(r, 500));
    await publishReadings(local, s.site);
    await local.close();
    // the site's windows have closed every window before the link returns
    const expected =
      s === raw
        ? readings
        : await pollUntil(
            async () => {
              const r = await s.edge.report();
              const n = r.streams.aggregates?.messages ?? 0;
              return n >= WAN_DEVICES * (WAN_SECONDS / 10) ? n : undefined;
            },
            { timeoutMs: 120_000, intervalMs: 250, what: "the site's partials" },
          );
    const before = s.proxy.bytes();
    s.proxy.restore();
    const [stream, subject] = s === raw ? ["TELEMETRY", "telemetry.wan-raw.>"] : ["AGGREGATES", "agg.*.wan-pre.>"];
    await pollUntil(async () => ((await hubCount(svc, stream, subject)) >= expected ? true : undefined), { timeoutMs: 120_000, intervalMs: 50, what: `${expected} at the hub` });
    const after = s.proxy.bytes();
    const bytes = after.up - before.up + (after.down - before.down);
    if (s === raw) out.raw = bytes;
    else {
      out.preAggregated = bytes;
      out.partials = expected;
    }
  }
  return out;
}

export function edgeMarkdown(r: EdgeBench): string {
  const row = (name: string, d: DrainRun): string => `| ${name} | ${fmt(d.firstMs)} | ${fmt(d.drainedMs)} | ${fmt(d.rate)} | ${fmt(d.rate / r.rawIngest, 2)}× |`;
  const all = [r.fabric.firstMs, r.outage.fabric, ...r.outages];
  const within = all.filter((ms) => ms <= 3_000).length;
  const ok = within === all.length;
  return [
    `| source (${fmt(BACKLOG)} buffered ${PAYLOAD}-byte messages) | link restored → flowing, ms | → drained, ms | drain msg/s | vs hub raw ingest (${fmt(r.rawIngest)} msg/s) |`,
    "| --- | ---: | ---: | ---: | ---: |",
    row("fabric: durable source (consumer `hub-<site>` on the site)", r.fabric),
    row("anchor: nats-server's default source (ephemeral consumer)", r.anchor),
    "",
    "| after | fabric (durable), ms to flowing | anchor (default), ms to flowing |",
    "| --- | ---: | ---: |",
    `| a ${OUTAGE_MS / 1000} s outage, link restored | ${fmt(r.outage.fabric)} | ${fmt(r.outage.anchor)} |`,
    `| the hub's server killed and restarted | ${fmt(r.hubRestart.fabric)} | ${fmt(r.hubRestart.anchor)} |`,
    "",
    `The fabric's site over ${r.outages.length} more outages (4 of 3 s, 2 of 12 s), link restored → flowing: ${r.outages.map((ms) => fmt(ms)).join(", ")} ms.`,
    "",
    `| WAN bytes for ${fmt(r.wan.readings)} readings (${WAN_DEVICES} devices, 1 Hz, ${WAN_SECONDS / 60} min) | bytes | per reading |`,
    "| --- | ---: | ---: |",
    `| raw telemetry shipped | ${fmt(r.wan.raw)} | ${fmt(r.wan.raw / r.wan.readings, 1)} |`,
    `| pre-aggregated at the site (10 s tumbling count/sum/min/max/avg partials: ${fmt(r.wan.partials)} messages) | ${fmt(r.wan.preAggregated)} | ${fmt(r.wan.preAggregated / r.wan.readings, 1)} |`,
    "",
    `Pre-aggregation sends ${fmt(r.wan.raw / Math.max(1, r.wan.preAggregated), 1)}× fewer bytes over the WAN (both directions, protocol included, counted by the proxy from the link's return until the hub has it all).`,
    "",
    `Edge → hub latency at ${fmt(LATENCY_RATE)} msg/s for ${LATENCY_SECONDS} s (device publish at the site → a hub consumer's callback): p50 ${fmt(r.latency.p50, 1)} ms, p99 ${fmt(r.latency.p99, 1)} ms.`,
    "",
    `Goal (issue 6: flowing again within 3 s of the link returning): ${ok ? "**met**" : "**not met**"}: ${within} of ${all.length} returns of the fabric's site flowed within 3 s in this run.`,
  ].join("\n");
}
