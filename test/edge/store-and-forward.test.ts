import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NatsConnection } from "@nats-io/transport-node";
import { jetstreamManager, type StreamSource } from "@nats-io/jetstream";
import { pollUntil, resetConsumer } from "../../fabric/core/index.js";
import { addSite } from "../../fabric/hub/index.js";
import { edgeSourceConsumerConfig } from "../../leafnode-config/index.js";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { agentInboxPrefix } from "../../edge/index.js";
import { connectAs, Harness, startTestHub, type TestHub } from "../harness/index.js";
import { hubCount, hubSequence, hubService, linkDown, linkedSite, publishSeq, range, siteDevice, startTestSite, withTelemetryEntry } from "./site-helpers.js";

/**
 * Store and forward: whatever the fault, once the site is linked again the hub holds exactly the messages
 * published at the site, in order, without duplicates.
 */
const h = new Harness();
let hub: TestHub;
let svc: NatsConnection;
afterAll(() => h.dispose());
beforeAll(async () => {
  hub = await startTestHub(h, { windows: false });
  svc = await hubService(h, hub);
});

const N = 3_000;

describe("a site keeps publishing through faults and the hub ends with exactly what it published, in order", () => {
  it("the link is cut (the hub's side closes): buffered at the site, forwarded when it returns", async () => {
    const { s, dev } = await linkedSite(h, hub, "cut-fin");
    const subject = "telemetry.cut-fin.d1.seq";
    await publishSeq(dev.nc, subject, 0, N / 3);
    s.proxy.cut();
    await linkDown(s.edge);
    await publishSeq(dev.nc, subject, N / 3, N);
    expect(await hubCount(svc, "TELEMETRY", subject)).toBeLessThan(N);
    s.proxy.restore();
    expect(await hubSequence(svc, "TELEMETRY", subject, N)).toEqual(range(N));
    await dev.nc.close();
  });

  it("the link is cut silently (no FIN, nothing passes): the site notices within seconds and forwards when it returns", async () => {
    const { s, dev } = await linkedSite(h, hub, "cut-silent");
    const subject = "telemetry.cut-silent.d1.seq";
    await publishSeq(dev.nc, subject, 0, N / 3);
    await hubSequence(svc, "TELEMETRY", subject, N / 3);
    const cutAt = Date.now();
    s.proxy.cut({ silent: true });
    await publishSeq(dev.nc, subject, N / 3, N);
    // pings every 2 s, two unanswered: the site sees the silent cut within ~6 s
    await linkDown(s.edge, 15_000);
    expect(Date.now() - cutAt).toBeLessThan(10_000);
    s.proxy.restore();
    expect(await hubSequence(svc, "TELEMETRY", subject, N)).toEqual(range(N));
    await dev.nc.close();
  });

  it("the site restarts mid-outage (starting offline with the trust it kept) and still forwards everything", async () => {
    const s = await startTestSite(h, hub, "restart");
    await s.edge.caughtUp();
    let dev = await siteDevice(hub, s.edge, "d1");
    const subject = "telemetry.restart.d1.seq";
    await publishSeq(dev.nc, subject, 0, N / 3);
    s.proxy.cut();
    await publishSeq(dev.nc, subject, N / 3, (2 * N) / 3);
    await dev.nc.close();
    const edge = await s.restart();
    expect(edge.linkUp()).toBe(false);
    dev = await siteDevice(hub, edge, "d1");
    await publishSeq(dev.nc, subject, (2 * N) / 3, N);
    s.proxy.restore();
    expect(await hubSequence(svc, "TELEMETRY", subject, N)).toEqual(range(N));
    await dev.nc.close();
  });

  it("the hub is killed while the site drains its backlog: the rest comes after the hub's restart, nothing twice", { timeout: 120_000 }, async () => {
    const { s, dev } = await linkedSite(h, hub, "kill-drain");
    const subject = "telemetry.kill-drain.d1.seq";
    const n = 30_000;
    s.proxy.cut();
    await publishSeq(dev.nc, subject, 0, n);
    s.proxy.restore();
    const before = await pollUntil(async () => {
      const c = await hubCount(svc, "TELEMETRY", subject);
      return c > 0 ? c : undefined;
    }, { timeoutMs: 15_000, intervalMs: 5, what: "the drain to start" });
    const pid = hub.serverPids()[0] ?? 0;
    process.kill(pid, "SIGKILL");
    // the kill interrupted the drain: part of the backlog was still at the site
    expect(before).toBeLessThan(n);
    await pollUntil(() => ((hub.serverPids()[0] ?? pid) !== pid ? true : undefined), { timeoutMs: 15_000, what: "the hub's server to be restarted" });
    expect(await hubSequence(svc, "TELEMETRY", subject, n, 100_000)).toEqual(range(n));
    await dev.nc.close();
  });

  it("when the link returns, the events backlog reaches the hub before telemetry flows", async () => {
    const { s, dev } = await linkedSite(h, hub, "events-first");
    const telemetry = "telemetry.events-first.d1.seq";
    const events = "events.events-first.d1.alarm";
    s.proxy.cut();
    await linkDown(s.edge);
    await publishSeq(dev.nc, telemetry, 0, 20_000);
    await publishSeq(dev.nc, events, 0, 500);
    s.proxy.restore();
    await pollUntil(async () => ((await hubCount(svc, "EVENTS", events)) >= 500 ? true : undefined), { timeoutMs: 20_000, intervalMs: 5, what: "the events at the hub" });
    // telemetry was held back until then (but for what its source took before the pause landed)
    expect(await hubCount(svc, "TELEMETRY", telemetry)).toBeLessThan(2_000);
    expect(await hubSequence(svc, "TELEMETRY", telemetry, 20_000)).toEqual(range(20_000));
    expect(await hubSequence(svc, "EVENTS", events, 500)).toEqual(range(500));
    await dev.nc.close();
  });

  it("a hub source that does not listen is restarted by the hub at the site's request, and the backlog arrives", async () => {
    const { s, dev } = await linkedSite(h, hub, "unheard");
    const subject = "telemetry.unheard.d1.seq";
    await publishSeq(dev.nc, subject, 0, 100);
    await hubSequence(svc, "TELEMETRY", subject, 100);
    // the hub's source of the site's telemetry cannot be set up (it names a consumer the site does not have): the
    // site's consumer has nobody listening, as when nats-server has not set the source up again (its retries,
    // with a growing backoff, do not mend this one: they keep the entry as it is)
    const jsm = await jetstreamManager(svc);
    const c = (await jsm.streams.info("TELEMETRY")).config;
    const sources = (c.sources ?? []).map((x) => (x.external?.api === "$JS.unheard.API" ? { ...x, consumer: { name: "hub-unheard-gone", deliver_subject: "$FABRIC.src.unheard.telemetry" } } : x));
    await jsm.streams.update("TELEMETRY", { ...c, sources });
    const restartsBefore = (await s.edge.report()).sourceRestarts;
    await publishSeq(dev.nc, subject, 100, 2_000);
    expect(await hubSequence(svc, "TELEMETRY", subject, 2_000)).toEqual(range(2_000));
    expect((await s.edge.report()).sourceRestarts).toBeGreaterThan(restartsBefore);
    // the hub put its own source entry back
    const after = (await jsm.streams.info("TELEMETRY")).config.sources?.find((x) => x.external?.api === "$JS.unheard.API") as { consumer?: { deliver_subject?: string } } | undefined;
    expect(after?.consumer?.deliver_subject).toBe("$FABRIC.src.unheard.telemetry");
    await dev.nc.close();
  });

  it("the site's source consumer is deleted while the link is down: set up again when it returns, everything arrives once", async () => {
    const { s, dev } = await linkedSite(h, hub, "lost-consumer");
    const subject = "telemetry.lost-consumer.d1.seq";
    await publishSeq(dev.nc, subject, 0, 500);
    await hubSequence(svc, "TELEMETRY", subject, 500);
    s.proxy.cut();
    await linkDown(s.edge);
    const agent = await connectAs(s.edge.url, readFileSync(join(s.dataDir, "agent.creds"), "utf8"), { inboxPrefix: agentInboxPrefix("lost-consumer") });
    await (await jetstreamManager(agent)).consumers.delete("EDGE_TELEMETRY", "hub-lost-consumer");
    await agent.close();
    await publishSeq(dev.nc, subject, 500, 1_500);
    s.proxy.restore();
    expect(await hubSequence(svc, "TELEMETRY", subject, 1_500)).toEqual(range(1_500));
    await dev.nc.close();
  });

  it("a site's source entry replaced by a new one (a hub upgraded from before the subject transforms) stores nothing twice", async () => {
    const { s, dev } = await linkedSite(h, hub, "switch");
    const subject = "telemetry.switch.d1.seq";
    const withEntry = (f: (e: StreamSource) => StreamSource | undefined): Promise<void> => withTelemetryEntry(svc, "switch", f);
    // the entry as a hub of before the transforms made it (no data has flowed yet)
    await withEntry(({ subject_transforms: _t, ...old }) => old);
    await publishSeq(dev.nc, subject, 0, 1_000);
    expect(await hubSequence(svc, "TELEMETRY", subject, 1_000)).toEqual(range(1_000));
    // the old source goes, and the site's consumer is set back as if the hub had acknowledged none of it (flow
    // control acknowledges a window at a time: what the new source would otherwise start from)
    await withEntry(() => undefined);
    const agent = await connectAs(s.edge.url, readFileSync(join(s.dataDir, "agent.creds"), "utf8"), { inboxPrefix: agentInboxPrefix("switch") });
    const ajsm = await jetstreamManager(agent);
    await resetConsumer(agent, { api: "$JS.API", stream: "EDGE_TELEMETRY", consumer: "hub-switch", seq: 1 });
    expect((await ajsm.consumers.info("EDGE_TELEMETRY", "hub-switch")).ack_floor.stream_seq).toBe(0);
    await publishSeq(dev.nc, subject, 1_000, 1_500);
    // the new entry: a new source to nats-server, which the hub starts past what it holds
    await addSite(svc, "switch", ["events", "telemetry"]);
    expect(await hubSequence(svc, "TELEMETRY", subject, 1_500)).toEqual(range(1_500));
    await pollUntil(async () => {
      const ci = await ajsm.consumers.info("EDGE_TELEMETRY", "hub-switch");
      return ci.num_pending + ci.num_ack_pending === 0 ? true : undefined;
    }, { timeoutMs: 30_000, what: "the site's backlog acknowledged" });
    expect(await hubCount(svc, "TELEMETRY", subject)).toBe(1_500);
    await agent.close();
    await dev.nc.close();
  });

  it("a changed source entry for a site that is offline is refused and the old one stays; the site's return switches it", async () => {
    const { s, dev } = await linkedSite(h, hub, "away-switch");
    const subject = "telemetry.away-switch.d1.seq";
    await withTelemetryEntry(svc, "away-switch", ({ subject_transforms: _t, ...old }) => old);
    await publishSeq(dev.nc, subject, 0, 100);
    await hubSequence(svc, "TELEMETRY", subject, 100);
    s.proxy.cut();
    await linkDown(s.edge);
    await expect(addSite(svc, "away-switch", ["events", "telemetry"])).rejects.toMatchObject({ code: "FABRIC_ERR_SITE_SOURCE" });
    const entry = async (): Promise<StreamSource | undefined> => (await (await jetstreamManager(svc)).streams.info("TELEMETRY")).config.sources?.find((x) => x.external?.api === "$JS.away-switch.API");
    expect((await entry())?.subject_transforms ?? []).toEqual([]);
    await publishSeq(dev.nc, subject, 100, 200);
    s.proxy.restore();
    // the site registers again when its link returns: now the switch goes through, with nothing twice
    expect(await hubSequence(svc, "TELEMETRY", subject, 200)).toEqual(range(200));
    await pollUntil(async () => (((await entry())?.subject_transforms ?? []).length > 0 ? true : undefined), { what: "the fabric's entry" });
    await dev.nc.close();
  });

  it("a new source entry for a site whose stream was made again from scratch skips none of its new messages", async () => {
    const { s, dev } = await linkedSite(h, hub, "remade");
    const subject = "telemetry.remade.d1.seq";
    const withEntry = (f: (e: StreamSource) => StreamSource | undefined): Promise<void> => withTelemetryEntry(svc, "remade", f);
    // an entry of before the transforms, so that the fabric's entry is a new source to nats-server
    await withEntry(({ subject_transforms: _t, ...old }) => old);
    await publishSeq(dev.nc, subject, 0, 1_000);
    await hubSequence(svc, "TELEMETRY", subject, 1_000);
    // the site loses its stream (made again, numbered from 1), and the hub's entry goes
    await withEntry(() => undefined);
    const agent = await connectAs(s.edge.url, readFileSync(join(s.dataDir, "agent.creds"), "utf8"), { inboxPrefix: agentInboxPrefix("remade") });
    const ajsm = await jetstreamManager(agent);
    const cfg = (await ajsm.streams.info("EDGE_TELEMETRY")).config;
    await ajsm.streams.delete("EDGE_TELEMETRY");
    await ajsm.streams.add(cfg);
    await ajsm.consumers.add("EDGE_TELEMETRY", edgeSourceConsumerConfig("remade", "telemetry"));
    await publishSeq(dev.nc, subject, 1_000, 1_300);
    // the hub's last message from the site (its sequence 1 000) is not what the site holds now: nothing is skipped
    await addSite(svc, "remade", ["events", "telemetry"]);
    expect(await hubSequence(svc, "TELEMETRY", subject, 1_300)).toEqual(range(1_300));
    await agent.close();
    await dev.nc.close();
  });

  it("the hub is down (stopped, then started again on its data): the site forwards everything once it is back", async () => {
    const { s, dev } = await linkedSite(h, hub, "hub-down");
    const subject = "telemetry.hub-down.d1.seq";
    const events = "events.hub-down.d1.door";
    await publishSeq(dev.nc, subject, 0, N / 3);
    await hub.stop();
    await publishSeq(dev.nc, subject, N / 3, N);
    await publishSeq(dev.nc, events, 0, 100);
    hub = await startTestHub(h, { windows: false, keystoreDir: hub.keystoreDir, dataDir: hub.dataDir });
    s.proxy.target = hub.nodes[0]?.ports.leafnode ?? 0;
    svc = await hubService(h, hub);
    expect(await hubSequence(svc, "TELEMETRY", subject, N)).toEqual(range(N));
    expect(await hubSequence(svc, "EVENTS", events, 100)).toEqual(range(100));
    await dev.nc.close();
  });
});
