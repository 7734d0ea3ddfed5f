import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NatsConnection } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { pollUntil } from "../../fabric/core/index.js";
import { Harness, startTcpProxy, startTestHub, type TestHub } from "../harness/index.js";
import { hubCount, hubSequence, hubService, linkDown, linkedSite, publishSeq, siteDevice, startTestSite } from "./site-helpers.js";

/** A site linked to one node of a 3-node hub: the hub's R3 streams source it through that node. */
const h = new Harness();
let hub: TestHub;
let svc: NatsConnection;
afterAll(() => h.dispose());
beforeAll(async () => {
  hub = await startTestHub(h, { nodes: 3, windows: false });
  svc = await hubService(h, hub);
});

describe("a site and a clustered hub", () => {
  it("buffers through a cut and the R3 hub streams end with exactly what it published, in order", async () => {
    const { s, dev } = await linkedSite(h, hub, "clustered");
    const subject = "telemetry.clustered.d1.seq";
    await publishSeq(dev.nc, subject, 0, 1_000);
    s.proxy.cut();
    await linkDown(s.edge);
    await publishSeq(dev.nc, subject, 1_000, 3_000);
    await publishSeq(dev.nc, "events.clustered.d1.door", 0, 50);
    s.proxy.restore();
    expect(await hubSequence(svc, "TELEMETRY", subject, 3_000, 60_000)).toEqual(Array.from({ length: 3_000 }, (_, i) => i));
    expect(await hubSequence(svc, "EVENTS", "events.clustered.d1.door", 50, 60_000)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    await dev.nc.close();
  });

  it("fails over when hub nodes die (the one it is linked to, then the streams' leader): exactly what it published, in order", { timeout: 180_000 }, async () => {
    // the site knows every hub node's leaf URL, as a site of a real clustered hub would (each through a proxy)
    const proxies = await Promise.all(hub.nodes.map((x) => startTcpProxy(x.ports.leafnode)));
    for (const p of proxies) h.defer(() => p.close());
    const s = await startTestSite(h, hub, "failover", { hub: proxies.map((p) => `nats-leaf://127.0.0.1:${p.port}`) });
    await s.edge.caughtUp();
    const dev = await siteDevice(hub, s.edge, "d1");
    const subject = "telemetry.failover.d1.seq";
    const n = 40_000;
    await publishSeq(dev.nc, subject, 0, n / 4);
    // the node the site is linked to dies while the site publishes: it links to another one and goes on
    const linked = await pollUntil(async () => {
      for (const [i, node] of hub.nodes.entries()) if (await leafCount(node.ports.monitoring) > 0) return i;
      return undefined;
    }, { what: "the node the site is linked to" });
    const killed = killNode(linked);
    await publishSeq(dev.nc, subject, n / 4, n / 2);
    await killed;
    await pollUntil(async () => ((await hubCount(svc, "TELEMETRY", subject)) >= n / 2 ? true : undefined), { timeoutMs: 60_000, what: "the first half at the hub" });
    // a backlog builds while the link is cut; the streams' leader (which runs the source) dies as it drains
    for (const p of proxies) p.cut();
    await linkDown(s.edge);
    await publishSeq(dev.nc, subject, n / 2, n);
    const jsm = await jetstreamManager(svc);
    const leader = (await jsm.streams.info("TELEMETRY")).cluster?.leader ?? "";
    const leaderIndex = hub.nodes.findIndex((x) => x.name === leader);
    expect(leaderIndex).toBeGreaterThanOrEqual(0);
    for (const p of proxies) p.restore();
    const before = await pollUntil(async () => {
      const c = await hubCount(svc, "TELEMETRY", subject);
      return c > n / 2 ? c : undefined;
    }, { timeoutMs: 60_000, intervalMs: 5, what: "the drain to start" });
    const leaderKilled = killNode(leaderIndex);
    // the kill interrupted the drain: part of the backlog was still at the site
    expect(before).toBeLessThan(n);
    await leaderKilled;
    expect(await hubSequence(svc, "TELEMETRY", subject, n, 120_000)).toEqual(Array.from({ length: n }, (_, i) => i));
    await dev.nc.close();
  });
});

/** Leaf connections of a hub node (its /leafz). */
async function leafCount(monitorPort: number): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${monitorPort}/leafz`);
  const body = (await res.json()) as { leafs?: unknown[] | null };
  return (body.leafs ?? []).length;
}

/** SIGKILLs a hub node's nats-server and resolves once its supervisor has started it again. */
async function killNode(i: number): Promise<void> {
  const pid = hub.serverPids()[i] ?? 0;
  process.kill(pid, "SIGKILL");
  await pollUntil(() => ((hub.serverPids()[i] ?? pid) !== pid ? true : undefined), { timeoutMs: 30_000, what: `hub node ${i + 1} to be restarted` });
}
