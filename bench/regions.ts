// Two fabric regions on this machine, each hub (`fabric up --region`) a process of its own, linked a→b with
// `fabric region link` through a TCP proxy in a third process that delays every chunk: cross-region copy latency,
// exactly-once across cuts of the link, and revocation latency across regions. The load generator and the
// clients run in the benchmark's process.
import { spawn } from "node:child_process";
import { cpSync } from "node:fs";
import { join } from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import { jetstream, jetstreamManager, type ConsumerMessages } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { JetStreamPublisher, pollUntil, projectRoot } from "../fabric/core/index.js";
import { initKeystore, issueUser, Keystore, openClaimsPusher, pushAccounts, revokeUsers } from "../identity/index.js";
import { connectAs, reapOnDispose, runCli, startCli, waitClosed, type Harness, type RunningCli } from "../test/harness/index.js";
import { fmt, percentile, processCpuMs, treeCpuMs } from "./lib.js";

/** One-way delay the proxy adds to the link, each direction (ms): the physical floor of a copy. */
export const REGIONS_DELAY_MS = 100;
export const REGIONS_RATE = 5_000;
export const REGIONS_LATENCY_SECONDS = 20;
export const REGIONS_CUTS = 10;
export const REGIONS_CUT_MS = 2_000;
export const REGIONS_UP_MS = 1_500;
export const REGIONS_REVOKED = 20;
const MAX_OUTSTANDING = 2_000;
const PAYLOAD = 100;
/** A copy is late when it is stored this long after its publish (the latency goal). */
const LATE_MS = 500;

export interface LatencyStats {
  n: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

export interface CutRecovery {
  /** Link restored → first event of a stored in b again (ms); NaN when not before the next cut. */
  resumedMs: number;
  /** Link restored → first event stored in b less than LATE_MS after its publish (ms); NaN when not before the next cut. */
  caughtUpMs: number;
}

export interface RegionsBench {
  delayMs: number;
  latency: {
    /** Offered rate achieved (publish calls per second over the phase). */
    offered: number;
    /** Publish time (in the payload) → stored in b's copy (the copy's own timestamp). */
    stored: LatencyStats;
    /** Publish time → delivered to a consumer in b. */
    delivered: LatencyStats;
    /** Publish → acknowledged (stored) in a: the local reference. */
    ackedInA: LatencyStats;
    /** Event-loop delay (ms) of the benchmark's process (the load generator and the consumer) and of the proxy's. */
    eventLoop: { bench: { p99: number; max: number }; proxy: { p99: number; max: number } };
    /** CPU each process used during the phase, in % of one core (a hub: its node process and its nats-server). */
    cpu: { hubA: number; hubB: number; proxy: number; bench: number };
    /** a's consumer b copies through, sampled every 100 ms: its ack limit, how often it was reached, rewinds of its delivered sequence. */
    origin: { samples: number; maxAckPending: number; atLimit: number; highestAckPending: number; rewinds: number };
    /** Pauses in b's copy (consecutive stored timestamps > 100 ms apart) while a published continuously. */
    pauses: { count: number; longestMs: number };
  };
  cuts: {
    cuts: number;
    offered: number;
    published: number;
    failed: number;
    storedInA: number;
    storedInB: number;
    distinct: number;
    missing: number;
    duplicates: number;
    /** Publishing stopped → b's copy holds every event (ms). */
    drainMs: number;
    recoveries: CutRecovery[];
  };
  /** `warm`: one claims pusher kept open (judged); `cold`: `pushAccounts`, a new admin connection each time (as `fabric-id revoke`). */
  revocation: { warm: { remote: RevocationStats; local: RevocationStats }; cold: { remote: RevocationStats; local: RevocationStats } };
}

export type RevocationStats = LatencyStats & { failed: number };

function stats(values: readonly number[]): LatencyStats {
  return { n: values.length, p50: percentile(values, 50), p90: percentile(values, 90), p99: percentile(values, 99), max: values.reduce((m, v) => Math.max(m, v), values.length > 0 ? -Infinity : NaN) };
}

/** ~100-byte JSON event: its id and its publish time (ms, wall clock: the servers stamp stored messages with it). */
function payload(i: number): Uint8Array {
  const b = Buffer.alloc(PAYLOAD, 32);
  b.write(JSON.stringify({ i, ts: Date.now() }));
  return b;
}

/** What the consumer in b has seen of the copy of a's EVENTS, by event id. */
class CopyWatch {
  /** How many times each event id was stored in b's copy. */
  readonly counts: Uint16Array;
  /** Per event id: publish time, stored-in-b time, delivered time (ms); NaN until seen. */
  readonly publishedAt: Float64Array;
  readonly storedAt: Float64Array;
  readonly deliveredAt: Float64Array;
  /** Stored-in-b times in stream order, with the event ids (for the recoveries after cuts). */
  readonly order: { stored: number; id: number }[] = [];
  lastSeq = 0;
  messages = 0;
  private msgs: ConsumerMessages | undefined;

  constructor(capacity: number) {
    this.counts = new Uint16Array(capacity);
    this.publishedAt = new Float64Array(capacity).fill(NaN);
    this.storedAt = new Float64Array(capacity).fill(NaN);
    this.deliveredAt = new Float64Array(capacity).fill(NaN);
  }

  async start(nc: NatsConnection, stream: string): Promise<void> {
    const consumer = await jetstream(nc).consumers.get(stream);
    this.msgs = await consumer.consume({
      callback: (m) => {
        const now = Date.now();
        // an ordered consumer delivers each stream sequence once; be safe against a reset all the same
        if (m.info.streamSequence <= this.lastSeq) return;
        this.lastSeq = m.info.streamSequence;
        this.messages++;
        const { i, ts } = m.json<{ i: number; ts: number }>();
        if (i < 0 || i >= this.counts.length) return;
        const stored = m.info.timestampNanos / 1e6;
        this.counts[i] = (this.counts[i] ?? 0) + 1;
        if (Number.isNaN(this.storedAt[i])) {
          this.publishedAt[i] = ts;
          this.storedAt[i] = stored;
          this.deliveredAt[i] = now;
        }
        this.order.push({ stored, id: i });
      },
    });
  }

  async stop(): Promise<void> {
    await this.msgs?.close();
  }
}

/**
 * Publishes event ids [from, …) into a's EVENTS at `rate` per second for `ms`, pipelined (at most
 * MAX_OUTSTANDING unacknowledged), each with its own Nats-Msg-Id. Returns the ids used and the acks.
 */
async function publishPaced(pub: JetStreamPublisher, from: number, rate: number, ms: number, ackMs: number[] = []): Promise<{ next: number; offered: number; acked: number; failed: number }> {
  const acks: Promise<boolean>[] = [];
  let acked = 0;
  let failed = 0;
  let i = from;
  const start = performance.now();
  for (;;) {
    const elapsed = performance.now() - start;
    if (elapsed >= ms) break;
    const due = from + Math.floor((rate * elapsed) / 1000);
    while (i < due) {
      if (acks.length >= MAX_OUTSTANDING) {
        if (await acks.shift()) acked++;
        else failed++;
        continue;
      }
      const sent = performance.now();
      acks.push(
        pub.publish(`events.bench.d${i % 100}.tick`, payload(i), { msgId: `bench-${i}` }).then(
          () => {
            ackMs.push(performance.now() - sent);
            return true;
          },
          () => false,
        ),
      );
      i++;
    }
    await sleep(5);
  }
  const offered = ((i - from) * 1000) / (performance.now() - start);
  for (const ok of await Promise.all(acks)) {
    if (ok) acked++;
    else failed++;
  }
  return { next: i, offered, acked, failed };
}

/**
 * Revokes each user (by key) in region a's keystore copy (under its lock: a's hub process changes it too) and
 * times until its connection (to whichever region) closes: `warm` pushes to a's server through one claims pusher
 * kept open, `cold` with `pushAccounts` (a new admin connection and server ping each time, as `fabric-id revoke` does).
 */
async function revokeEach(ks: Keystore, aUrl: string, users: { name: string; key: string; nc: NatsConnection }[], mode: "cold" | "warm"): Promise<RevocationStats> {
  const times: number[] = [];
  let failed = 0;
  const pusher = mode === "warm" ? await openClaimsPusher(ks, { servers: [aUrl] }) : undefined;
  try {
    for (const u of users) {
      const t0 = performance.now();
      const closed = waitClosed(u.nc, 10_000).then(
        () => performance.now(),
        () => NaN,
      );
      await ks.withLock(() => revokeUsers(ks, "fleet", u.key));
      const complete = pusher !== undefined ? (await pusher.push("fleet")).complete : (await pushAccounts(ks, { servers: [aUrl], accounts: ["fleet"] })).accounts.every((a) => a.complete);
      if (!complete) console.warn(`regions: push of the revocation of ${u.name} incomplete`);
      const t = await closed;
      if (Number.isNaN(t)) failed++;
      else times.push(t - t0);
    }
  } finally {
    await pusher?.close();
  }
  return { ...stats(times), failed };
}

/** A region's hub: `fabric up --region <name>` in a process of its own (its nats-server a child of it). */
interface RegionHub {
  name: string;
  up: RunningCli;
  url: string;
  leafPort: number;
  dataDir: string;
  keystoreDir: string;
  /** The region's copy of the operator's keystore (the running hub changes it too: change it under ks.withLock). */
  ks: Keystore;
}

/** SIGTERM (the hub stops its nats-server), SIGKILL if it has not exited after `graceMs`. */
async function stopHub(up: RunningCli, graceMs = 15_000): Promise<void> {
  const kill = setTimeout(() => {
    try {
      process.kill(up.pid, "SIGKILL");
    } catch {
      // gone already
    }
  }, graceMs);
  try {
    await up.signal("SIGTERM");
  } finally {
    clearTimeout(kill);
  }
}

async function startRegionHub(h: Harness, root: string, master: string, name: string): Promise<RegionHub> {
  const keystoreDir = join(root, `${name}-keys`);
  cpSync(master, keystoreDir, { recursive: true });
  const dataDir = join(root, `${name}-data`);
  // registered before the hub's stop: dispose runs in reverse, so this only kills a nats-server the hub left behind
  reapOnDispose(h, [join(dataDir, "hub")]);
  const up = startCli(
    "fabric",
    ["up", "--region", name, "--store", keystoreDir, "--data", dataDir, "--host", "127.0.0.1", "--port", "0", "--monitor-port", "0", "--leaf-port", "0", "--metrics-port", "0"].concat(
      ["--no-mqtt", "--no-grpc", "--no-windows", "--no-sinks", "--no-status-page", "--json"],
    ),
    { env: { FABRIC_LOG_LEVEL: "warn", FABRIC_HOME: join(root, `${name}-home`) } },
  );
  h.defer(() => stopHub(up));
  const ready = await up.json<{ urls: string[]; nodes: { ports: { leafnode: number } }[] }>(60_000);
  const url = ready.urls[0];
  const leafPort = ready.nodes[0]?.ports.leafnode;
  if (url === undefined || leafPort === undefined) throw new Error(`fabric up --region ${name} printed no client URL or leaf port`);
  return { name, up, url, leafPort, dataDir, keystoreDir, ks: Keystore.open(keystoreDir) };
}

interface ProxyReply {
  ok?: boolean;
  error?: string;
  port?: number;
  /** When the proxy process applied the command (its Date.now(): the same clock as the servers'). */
  at: number;
  links?: number;
  eventLoop?: { p99: number; max: number };
}

/** bench/tcp-proxy-process.ts: the harness's TCP proxy in a process of its own, driven over stdin. */
interface ProxyProcess {
  port: number;
  pid: number;
  command(line: string): Promise<ProxyReply>;
}

async function startProxyProcess(h: Harness, target: number, delayMs: number): Promise<ProxyProcess> {
  const child = spawn(process.execPath, ["--import", "tsx", join(projectRoot(), "bench", "tcp-proxy-process.ts"), String(target), String(delayMs)], {
    cwd: projectRoot(),
    stdio: ["pipe", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  child.stdin.on("error", () => undefined);
  const exited = new Promise<void>((ok) => child.on("close", () => ok()));
  const waiters: { ok: (r: ProxyReply) => void; fail: (e: Error) => void }[] = [];
  const next = (): Promise<ProxyReply> => new Promise((ok, fail) => waiters.push({ ok, fail }));
  createInterface({ input: child.stdout }).on("line", (line) => {
    try {
      waiters.shift()?.ok(JSON.parse(line) as ProxyReply);
    } catch {
      // not a reply
    }
  });
  child.on("close", (code) => {
    for (const w of waiters.splice(0)) w.fail(new Error(`the proxy process exited (${code}): ${stderr}`));
  });
  h.defer(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const kill = setTimeout(() => child.kill("SIGKILL"), 5_000);
    child.stdin.end(); // it quits when its stdin closes
    await exited;
    clearTimeout(kill);
  });
  const startTimer = setTimeout(() => child.kill("SIGKILL"), 30_000);
  const ready = await next().finally(() => clearTimeout(startTimer));
  if (ready.port === undefined || child.pid === undefined) throw new Error(`the proxy process did not start: ${stderr}`);
  return {
    port: ready.port,
    pid: child.pid,
    command: async (line) => {
      const reply = next();
      child.stdin.write(`${line}\n`);
      const r = await reply;
      if (r.ok !== true) throw new Error(`proxy: ${line}: ${r.error ?? "failed"}`);
      return r;
    },
  };
}

/** `fabric region <args>` as an operator runs it; throws with its stderr when it fails. */
async function fabricRegion(args: string[]): Promise<string> {
  const r = await runCli("fabric", ["region", ...args], { env: { FABRIC_LOG_LEVEL: "warn" }, timeoutMs: 30_000 });
  if (r.code !== 0) throw new Error(`fabric region ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

/** Polls `fabric region ls --json` on the region's machine until it has links and every one is up. */
async function waitLinked(hub: RegionHub, timeoutMs = 60_000): Promise<void> {
  await pollUntil(
    async () => {
      const links = JSON.parse(await fabricRegion(["ls", "--json", "--data", hub.dataDir, "--store", hub.keystoreDir, "--server", hub.url])) as { peer: string; up: boolean }[];
      return links.length > 0 && links.every((l) => l.up) ? true : undefined;
    },
    { timeoutMs, intervalMs: 500, what: `the links of region ${hub.name} up (fabric region ls)` },
  );
}

/** A service connection into a region's tenant account, its credential issued from the region's keystore copy. */
async function serviceConnection(h: Harness, hub: RegionHub, name: string): Promise<NatsConnection> {
  const creds = (await hub.ks.withLock(() => issueUser(hub.ks, { account: "fleet", role: "service", name }))).creds ?? "";
  const nc = await connectAs(hub.url, creds, { name, reconnect: true });
  h.defer(() => nc.close());
  return nc;
}

export async function benchRegions(h: Harness): Promise<RegionsBench> {
  const capacity = Math.ceil(REGIONS_RATE * (REGIONS_LATENCY_SECONDS + (REGIONS_CUTS * (REGIONS_CUT_MS + REGIONS_UP_MS) + REGIONS_UP_MS) / 1000) * 1.2) + 1_000;
  console.log(`regions: starting regions a and b (fabric up --region, a process each) and the proxy (${REGIONS_DELAY_MS} ms each way, a process of its own)…`);
  const root = h.tempDir("fabric-bench-regions-");
  const master = join(root, "operator-keys");
  initKeystore(master);
  const [ra, rb] = await Promise.all([startRegionHub(h, root, master, "a"), startRegionHub(h, root, master, "b")]);
  const proxy = await startProxyProcess(h, rb.leafPort, REGIONS_DELAY_MS);
  console.log("regions: fabric region link b --url <proxy> (in a), fabric region link a (in b)…");
  await fabricRegion(["link", "b", "--url", `nats-leaf://127.0.0.1:${proxy.port}`, "--data", ra.dataDir]);
  await fabricRegion(["link", "a", "--data", rb.dataDir]);
  await waitLinked(ra);
  await waitLinked(rb);
  const a = await serviceConnection(h, ra, "bench-a");
  const b = await serviceConnection(h, rb, "bench-b");
  const jsmA = await jetstreamManager(a);
  const jsmB = await jetstreamManager(b);
  const inA0 = (await jsmA.streams.info("EVENTS")).state.messages;

  // warm-up: the copy is flowing before anything is timed (ids ≥ capacity: not counted)
  const pub = new JetStreamPublisher(a, { maxOutstanding: MAX_OUTSTANDING });
  await Promise.all(Array.from({ length: 100 }, (_, k) => pub.publish("events.bench.warm.tick", payload(capacity + k), { msgId: `warm-${k}` })));
  await pollUntil(async () => ((await jsmB.streams.info("REGION_a_EVENTS")).state.messages >= 100 ? true : undefined), { timeoutMs: 60_000, intervalMs: 100, what: "the warm-up events of a in b" });
  const watch = new CopyWatch(capacity);
  await watch.start(b, "REGION_a_EVENTS");

  console.log(`regions: ${REGIONS_LATENCY_SECONDS} s at ${fmt(REGIONS_RATE)} events/s into a, copy latency in b…`);
  const ackMs: number[] = [];
  const eld = monitorEventLoopDelay({ resolution: 5 });
  await proxy.command("stats"); // resets the proxy's event-loop histogram
  eld.enable();
  const cpu0 = { hubA: treeCpuMs(ra.up.pid), hubB: treeCpuMs(rb.up.pid), proxy: processCpuMs(proxy.pid), bench: process.cpuUsage(), at: performance.now() };
  const origin = { samples: 0, maxAckPending: 0, atLimit: 0, highestAckPending: 0, rewinds: 0 };
  let sampling = true;
  const sampler = (async () => {
    let lastDelivered = 0;
    let wasAtLimit = false;
    while (sampling) {
      const ci = await jsmA.consumers.info("EVENTS", "region-b").catch(() => undefined);
      if (ci !== undefined) {
        origin.samples++;
        origin.maxAckPending = ci.config.max_ack_pending ?? 0;
        origin.highestAckPending = Math.max(origin.highestAckPending, ci.num_ack_pending);
        const atLimit = ci.num_ack_pending >= origin.maxAckPending;
        if (atLimit && !wasAtLimit) origin.atLimit++;
        wasAtLimit = atLimit;
        if (ci.delivered.stream_seq < lastDelivered) origin.rewinds++;
        lastDelivered = ci.delivered.stream_seq;
      }
      await sleep(100);
    }
  })();
  const p1 = await publishPaced(pub, 0, REGIONS_RATE, REGIONS_LATENCY_SECONDS * 1000, ackMs);
  eld.disable();
  const proxyStats = await proxy.command("stats");
  const elapsed = performance.now() - cpu0.at;
  const benchCpu = process.cpuUsage(cpu0.bench);
  const share = (ms: number): number => (ms * 100) / elapsed;
  const cpu = {
    hubA: share(treeCpuMs(ra.up.pid) - cpu0.hubA),
    hubB: share(treeCpuMs(rb.up.pid) - cpu0.hubB),
    proxy: share(processCpuMs(proxy.pid) - cpu0.proxy),
    bench: share((benchCpu.user + benchCpu.system) / 1000),
  };
  await pollUntil(() => (Array.from({ length: p1.next }, (_, i) => i).every((i) => (watch.counts[i] ?? 0) > 0) ? true : undefined), { timeoutMs: 60_000, intervalMs: 100, what: "the latency phase's events in b" }).catch(
    () => console.warn("regions: not every event of the latency phase reached b within 60 s"),
  );
  sampling = false;
  await sampler;
  const storedLat: number[] = [];
  const deliveredLat: number[] = [];
  for (let i = 0; i < p1.next; i++) {
    const p = watch.publishedAt[i] ?? NaN;
    if (Number.isNaN(p)) continue;
    storedLat.push((watch.storedAt[i] ?? NaN) - p);
    deliveredLat.push((watch.deliveredAt[i] ?? NaN) - p);
  }

  const p1Stored = watch.order.filter((o) => o.id < p1.next).map((o) => o.stored);
  const pauses = { count: 0, longestMs: 0 };
  for (let k = 1; k < p1Stored.length; k++) {
    const gap = (p1Stored[k] ?? 0) - (p1Stored[k - 1] ?? 0);
    if (gap > 100) pauses.count++;
    pauses.longestMs = Math.max(pauses.longestMs, gap);
  }

  console.log(`regions: ${REGIONS_CUTS} cuts of the link (${REGIONS_CUT_MS} ms each, ${REGIONS_UP_MS} ms apart) at ${fmt(REGIONS_RATE)} events/s…`);
  const p2ms = REGIONS_CUTS * (REGIONS_CUT_MS + REGIONS_UP_MS) + REGIONS_UP_MS;
  const restores: number[] = [];
  const cutter = (async () => {
    for (let k = 0; k < REGIONS_CUTS; k++) {
      await sleep(REGIONS_UP_MS);
      await proxy.command("cut");
      await sleep(REGIONS_CUT_MS);
      restores.push((await proxy.command("restore")).at);
    }
  })();
  const p2 = await publishPaced(pub, p1.next, REGIONS_RATE, p2ms);
  await cutter;
  const stoppedAt = performance.now();
  pub.close();
  const total = p2.next; // ids 0 … total-1
  const storedInA = (await jsmA.streams.info("EVENTS")).state.messages - inA0 - 100;
  const expected = Math.min(total, storedInA);
  let drainMs = NaN;
  try {
    await pollUntil(
      async () => {
        const si = await jsmB.streams.info("REGION_a_EVENTS");
        return si.state.messages - 100 >= expected && watch.lastSeq >= si.state.last_seq ? true : undefined;
      },
      { timeoutMs: 120_000, intervalMs: 50, what: "every event of a in b" },
    );
    drainMs = performance.now() - stoppedAt;
  } catch {
    console.warn("regions: b's copy did not hold every event of a within 120 s of the last publish");
  }
  await watch.stop();
  const storedInB = (await jsmB.streams.info("REGION_a_EVENTS")).state.messages - 100;
  let distinct = 0;
  let duplicates = 0;
  for (let i = 0; i < total; i++) {
    const c = watch.counts[i] ?? 0;
    if (c > 0) distinct++;
    if (c > 1) duplicates += c - 1;
  }
  const recoveries: CutRecovery[] = restores.map((r, k) => {
    const until = k + 1 < restores.length ? (restores[k + 1] ?? Infinity) - REGIONS_CUT_MS : Infinity;
    const after = watch.order.filter((o) => o.stored > r && o.stored < until);
    const first = after[0];
    const caught = after.find((o) => o.stored - (watch.publishedAt[o.id] ?? NaN) < LATE_MS);
    return { resumedMs: first === undefined ? NaN : first.stored - r, caughtUpMs: caught === undefined ? NaN : caught.stored - r };
  });

  console.log(`regions: revoking ${REGIONS_REVOKED} users connected to b, one at a time, in a (one claims pusher kept open); then ${REGIONS_REVOKED} connected to a; then both again with pushAccounts…`);
  const ks = ra.ks;
  const connect = async (prefix: string, hub: RegionHub): Promise<{ name: string; key: string; nc: NatsConnection }[]> => {
    const out: { name: string; key: string; nc: NatsConnection }[] = [];
    for (let k = 0; k < REGIONS_REVOKED; k++) {
      const name = `${prefix}${k}`;
      const issued = await ks.withLock(() => issueUser(ks, { account: "fleet", role: "service", name }));
      const nc = await connectAs(hub.url, issued.creds ?? "", { name });
      h.defer(() => nc.close());
      out.push({ name, key: issued.record.publicKey, nc });
    }
    return out;
  };
  const warmB = await connect("bench-revoke-warm-b-", rb);
  const warmA = await connect("bench-revoke-warm-a-", ra);
  const warm = { remote: await revokeEach(ks, ra.url, warmB, "warm"), local: await revokeEach(ks, ra.url, warmA, "warm") };
  const coldB = await connect("bench-revoke-cold-b-", rb);
  const coldA = await connect("bench-revoke-cold-a-", ra);
  const cold = { remote: await revokeEach(ks, ra.url, coldB, "cold"), local: await revokeEach(ks, ra.url, coldA, "cold") };

  return {
    delayMs: REGIONS_DELAY_MS,
    latency: {
      offered: p1.offered,
      stored: stats(storedLat),
      delivered: stats(deliveredLat),
      ackedInA: stats(ackMs),
      eventLoop: { bench: { p99: eld.percentile(99) / 1e6, max: eld.max / 1e6 }, proxy: proxyStats.eventLoop ?? { p99: NaN, max: NaN } },
      cpu,
      origin,
      pauses,
    },
    cuts: {
      cuts: REGIONS_CUTS,
      offered: p2.offered,
      published: p1.acked + p2.acked,
      failed: p1.failed + p2.failed,
      storedInA,
      storedInB,
      distinct,
      missing: Math.max(0, storedInA - distinct),
      duplicates,
      drainMs,
      recoveries,
    },
    revocation: { warm, cold },
  };
}

const ms = (n: number): string => (Number.isNaN(n) ? "—" : fmt(n, n < 10 ? 1 : 0));
const ratio = (n: number, d: number): string => (Number.isNaN(n) ? "—" : `${fmt(n / d, 2)}×`);
const goal = (ok: boolean): string => (ok ? "met" : "**not met**");

export function regionsMarkdown(r: RegionsBench): string {
  const d = r.delayMs;
  const L = r.latency;
  const C = r.cuts;
  const R = r.revocation;
  const resumed = C.recoveries.map((c) => c.resumedMs).filter((n) => !Number.isNaN(n));
  const caught = C.recoveries.map((c) => c.caughtUpMs).filter((n) => !Number.isNaN(n));
  const late = (s: LatencyStats): string => `${ms(s.p50)} / ${ms(s.p90)} / ${ms(s.p99)} / ${ms(s.max)}`;
  return [
    `### Cross-region copy latency (${fmt(L.stored.n)} events at ${fmt(L.offered)} events/s offered, no cuts)`,
    "",
    "| | p50 / p90 / p99 / max (ms) | p99 ÷ one-way delay | goal |",
    "|---|---|---|---|",
    `| publish in a → stored in b's copy | ${late(L.stored)} | ${ratio(L.stored.p99, d)} | p99 < 500 ms: ${goal(L.stored.p99 < 500)} |`,
    `| publish in a → delivered to a consumer in b | ${late(L.delivered)} | ${ratio(L.delivered.p99, d)} | |`,
    `| publish in a → acknowledged (stored) in a: local reference | ${late(L.ackedInA)} | | |`,
    `| the link's one-way delay (the floor) | ${ms(d)} | 1.00× | |`,
    "",
    `Meanwhile: b's copy paused (nothing stored for over 100 ms while a published on) ${L.pauses.count} times, the longest ${ms(L.pauses.longestMs)} ms. ` +
      `a's consumer that b copies through (sampled every 100 ms, ${L.origin.samples} samples) reached its limit of ${fmt(L.origin.maxAckPending)} unacknowledged messages ${L.origin.atLimit} times ` +
      `(highest seen ${fmt(L.origin.highestAckPending)}: its acknowledgements come with flow control) and its delivered sequence went back ${L.origin.rewinds} times (redelivery from an earlier point). ` +
      `CPU used during the phase, in % of one core: hub a (its node process and nats-server) ${fmt(L.cpu.hubA)} %, hub b ${fmt(L.cpu.hubB)} %, the proxy ${fmt(L.cpu.proxy)} %, ` +
      `the benchmark's process (load generator and consumer) ${fmt(L.cpu.bench)} %. Event-loop delay of the proxy's process p99 ${ms(L.eventLoop.proxy.p99)} ms, max ${ms(L.eventLoop.proxy.max)} ms; ` +
      `of the benchmark's process p99 ${ms(L.eventLoop.bench.p99)} ms, max ${ms(L.eventLoop.bench.max)} ms.`,
    "",
    `### Exactly once across ${C.cuts} cuts of the link (${fmt(C.offered)} events/s offered throughout)`,
    "",
    "| published (acked) in a | stored in a | stored in b | distinct in b | missing | duplicates | last publish → all in b | goal |",
    "|---|---|---|---|---|---|---|---|",
    `| ${fmt(C.published)}${C.failed > 0 ? ` (+${fmt(C.failed)} failed)` : ""} | ${fmt(C.storedInA)} | ${fmt(C.storedInB)} | ${fmt(C.distinct)} | ${fmt(C.missing)} | ${fmt(C.duplicates)} | ${ms(C.drainMs)} ms | 0 missing, 0 duplicates: ${goal(C.missing === 0 && C.duplicates === 0)} |`,
    "",
    `After each restore (${C.recoveries.length} cuts): copying again after ${resumed.length > 0 ? `${ms(percentile(resumed, 50))} ms (median), ${ms(Math.max(...resumed))} ms (max)` : "—"}` +
      `${resumed.length < C.recoveries.length ? `; ${C.recoveries.length - resumed.length} did not resume before the next cut` : ""}; back under ${LATE_MS} ms behind after ` +
      `${caught.length > 0 ? `${ms(percentile(caught, 50))} ms (median), ${ms(Math.max(...caught))} ms (max)` : "—"}${caught.length < C.recoveries.length ? `; ${C.recoveries.length - caught.length} not before the next cut` : ""}.`,
    "",
    "### Revocation across regions",
    "",
    "| push | user connected to | users | revoke → disconnect p50 / p90 / p99 / max (ms) | p99 − one-way delay | goal p99 < " + `${d + 50} ms |`,
    "|---|---|---|---|---|---|",
    ...(["warm", "cold"] as const).flatMap((mode) => {
      const how = mode === "cold" ? "`pushAccounts` (new admin connection each time, as `fabric-id revoke`): informational" : "one claims pusher kept open";
      const row = (where: string, s: RevocationStats, remote: boolean): string =>
        `| ${how} | ${where} | ${s.n}${s.failed > 0 ? ` (+${s.failed} never disconnected)` : ""} | ${late(s)} | ${remote ? `${ms(s.p99 - d)} ms` : ""} | ${remote ? (mode === "warm" ? goal(s.failed === 0 && s.p99 < d + 50) : "(not judged)") : ""} |`;
      return [row("b (revoked in a)", R[mode].remote, true), row("a (local reference)", R[mode].local, false)];
    }),
  ].join("\n");
}
