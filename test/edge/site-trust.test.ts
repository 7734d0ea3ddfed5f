import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NatsConnection } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pollUntil } from "../../fabric/core/index.js";
import { issueUser, pushAccounts, revokeUsers } from "../../identity/index.js";
import { connectAs, expectDisconnect, Harness, startTestHub, waitClosed, type TestHub } from "../harness/index.js";
import { agentInboxPrefix } from "../../edge/index.js";
import { withSiteSource } from "../../leafnode-config/index.js";
import { hubCount, hubService, linkDown, siteDevice, startTestSite, type TestSite } from "./site-helpers.js";

/** Offline authentication, revocation catch-up, and what a site's leaf credential lets through. */
const h = new Harness();
let hub: TestHub;
let svc: NatsConnection;
afterAll(() => h.dispose());
beforeAll(async () => {
  hub = await startTestHub(h, { windows: false });
  svc = await hubService(h, hub);
});

async function revoke(device: string): Promise<void> {
  revokeUsers(hub.keystore, "fleet", device, "device");
  const report = await pushAccounts(hub.keystore, { servers: hub.urls, accounts: ["fleet"] });
  expect(report.accounts[0]?.complete).toBe(true);
}

describe("devices at a site authenticate offline, and revocations catch up as soon as the link returns", () => {
  let s: TestSite;
  let victimCreds = "";
  beforeAll(async () => {
    s = await startTestSite(h, hub, "rev");
    await s.edge.caughtUp();
  });

  it("a device connects at the site while the WAN is down (the site's own resolver holds the account)", async () => {
    s.proxy.cut();
    await linkDown(s.edge);
    const d = await siteDevice(hub, s.edge, "offline-ok");
    await d.nc.flush();
    expect(d.nc.isClosed()).toBe(false);
    await d.nc.close();
    s.proxy.restore();
    await pollUntil(() => (s.edge.linkUp() ? true : undefined), { timeoutMs: 15_000, what: "the link up" });
    await s.edge.caughtUp();
  });

  it("a device revoked while the site was offline is cut off and refused at the site once the link returns", async () => {
    const victim = await siteDevice(hub, s.edge, "victim");
    victimCreds = victim.creds;
    const bystander = await siteDevice(hub, s.edge, "bystander");
    s.proxy.cut();
    await linkDown(s.edge);
    await revoke("victim");
    // the hub refuses it at once; the site cannot know yet
    expect(String(await expectDisconnect(hub.urls, victim.creds))).toMatch(/authorization/i);
    const stillIn = await connectAs(s.edge.url, victim.creds);
    await stillIn.close();
    const restoredAt = Date.now();
    s.proxy.restore();
    await s.edge.caughtUp();
    // refused right away, not at a periodic sync: the catch-up runs first thing when the link returns
    expect(String(await expectDisconnect(s.edge.url, victim.creds))).toMatch(/authorization/i);
    await waitClosed(victim.nc, 5_000);
    expect(Date.now() - restoredAt).toBeLessThan(8_000);
    expect(bystander.nc.isClosed()).toBe(false);
    await bystander.nc.close();
  });

  it("a site that restarts offline keeps the revocations it has learnt", async () => {
    s.proxy.cut();
    const edge = await s.restart();
    expect(edge.linkUp()).toBe(false);
    expect(String(await expectDisconnect(edge.url, victimCreds))).toMatch(/authorization/i);
    const fresh = await siteDevice(hub, edge, "after-restart");
    await fresh.nc.close();
    s.proxy.restore();
    await edge.caughtUp();
  });

  it("while the link is up, a revocation reaches the site at once (the hub tells it), not at its next sync", async () => {
    // a sync interval far longer than the test: only the hub's notice can be in time
    const fast = await startTestSite(h, hub, "rev-live", { trustSyncEveryMs: 600_000 });
    await fast.edge.caughtUp();
    const victim = await siteDevice(hub, fast.edge, "live-victim");
    const t0 = Date.now();
    await revoke("live-victim");
    await waitClosed(victim.nc, 10_000);
    expect(Date.now() - t0).toBeLessThan(2_000);
    expect(String(await expectDisconnect(fast.edge.url, victim.creds))).toMatch(/authorization/i);
  });
});

describe("a site's leaf credential reaches its own site's subjects and the sourcing API, nothing else", () => {
  const subjectsToProbe = (own: string, other: string): string[] => [
    `cmd.${own}.d1.x`,
    `cmd.${other}.d1.x`,
    `telemetry.${own}.d1.x`,
    `telemetry.${other}.d1.x`,
    `events.${other}.d1.x`,
    `$FABRIC.edge.${own}.x`,
    `$FABRIC.edge.${other}.x`,
    // not the deliver subjects themselves: a hub subscriber there would see the real sourced deliveries
    `$FABRIC.src.${own}.probe`,
    `$FABRIC.src.${other}.probe`,
    `_INBOX.${own}.x`,
    `_INBOX.${other}.x`,
    "$FABRIC.id.probe",
    "agg.w.x",
    "$JS.ACK.TELEMETRY.x",
  ];

  /** Publishes every subject on `from` and returns which ones `to` received. */
  async function crossing(from: NatsConnection, to: NatsConnection, list: string[]): Promise<string[]> {
    // every probe round has its own payload: a marker of an earlier round still in flight must not end a later one
    let round = "warm-up";
    const got = new Set<string>();
    let markerRound = "";
    const marker = list.find((x) => x.startsWith("$FABRIC.edge.")) ?? "";
    // the marker last: interest crosses the link in the order of the subscriptions, so once the marker's has,
    // every other's has too
    const subs = [...list.filter((x) => x !== marker), marker].map((subject) =>
      to.subscribe(subject, {
        callback: (_e, m) => {
          if (m.string() !== round) return;
          got.add(m.subject);
          if (m.subject === marker) markerRound = round;
        },
      }),
    );
    await to.flush();
    // interest crosses the link asynchronously: wait until a subject that must pass does, then probe the rest
    await pollUntil(
      async () => {
        from.publish(marker, round);
        await from.flush();
        await new Promise((r) => setTimeout(r, 50));
        return markerRound === round ? true : undefined;
      },
      { timeoutMs: 10_000, what: "interest to cross the leaf link" },
    );
    round = "probe";
    got.clear();
    for (const subject of list) from.publish(subject, round);
    await from.flush();
    // the marker goes last: once it is in, everything sent before it has been through (or dropped)
    await pollUntil(
      async () => {
        from.publish(marker, round);
        await from.flush();
        return markerRound === round ? true : undefined;
      },
      { timeoutMs: 5_000, intervalMs: 50, what: "the probes" },
    );
    for (const sub of subs) sub.unsubscribe();
    return [...got].sort();
  }

  it("site → hub: only the site's own control and sourcing subjects, its inboxes and the identity service", async () => {
    const a = await startTestSite(h, hub, "site-a");
    await a.edge.caughtUp();
    const local = issueUser(hub.keystore, { account: "fleet", role: "service", name: "site-a-local", ephemeral: true });
    const atSite = await connectAs(a.edge.url, local.creds ?? "");
    const got = await crossing(atSite, svc, subjectsToProbe("site-a", "site-b"));
    expect(got).toEqual(["$FABRIC.edge.site-a.x", "$FABRIC.id.probe", "$FABRIC.src.site-a.probe", "_INBOX.site-a.x"].sort());
    await atSite.close();
  });

  it("a site that stores other sites' subjects (or any others) ships them under its own site's only", async () => {
    const e = await startTestSite(h, hub, "site-e");
    await e.edge.caughtUp();
    // what a compromised site can do: its agent's credential widens the site's stream to any subject
    const agent = await connectAs(e.edge.url, readFileSync(join(e.dataDir, "agent.creds"), "utf8"), { inboxPrefix: agentInboxPrefix("site-e") });
    const jsm = await jetstreamManager(agent);
    const cfg = (await jsm.streams.info("EDGE_TELEMETRY")).config;
    await jsm.streams.update("EDGE_TELEMETRY", { ...cfg, subjects: ["telemetry.>", "stray", "two.tokens", "events.site-f.>"] });
    const local = issueUser(hub.keystore, { account: "fleet", role: "service", name: "site-e-local", ephemeral: true });
    const publisher = await connectAs(e.edge.url, local.creds ?? "");
    const js = jetstream(publisher);
    for (const subject of ["telemetry.site-f.d1.forged", "telemetry.site-e.d1.own", "stray", "two.tokens", "events.site-f.d1.alarm"]) {
      await js.publish(subject, JSON.stringify({ i: 0, value: 1, ts: Date.now() }));
    }
    const shipped = ["telemetry.site-e.d1.alarm", "telemetry.site-e.d1.forged", "telemetry.site-e.d1.own", "telemetry.site-e.stray", "telemetry.site-e.two.tokens"];
    await pollUntil(async () => ((await hubCount(svc, "TELEMETRY", "telemetry.site-e.>")) >= shipped.length ? true : undefined), { timeoutMs: 50_000, what: "the site's messages at the hub" });
    const info = await (await jetstreamManager(svc)).streams.info("TELEMETRY", { subjects_filter: ">" });
    const fromSite = Object.keys(info.state.subjects ?? {}).filter((x) => !x.startsWith("telemetry.") || x.includes("site-e") || x.includes("site-f"));
    expect(fromSite.sort()).toEqual(shipped);
    expect(await hubCount(svc, "EVENTS", "events.site-f.>")).toBe(0);
    // the hub's source is as the fabric sets it: registering again changes nothing
    const sources = (await (await jetstreamManager(svc)).streams.info("TELEMETRY")).config.sources;
    expect(withSiteSource(sources, "site-e", "telemetry")).toStrictEqual(sources);
    await publisher.close();
    await agent.close();
  });

  it("hub → site: only the site's commands, control subjects and inboxes", async () => {
    const a = await startTestSite(h, hub, "site-c");
    await a.edge.caughtUp();
    const local = issueUser(hub.keystore, { account: "fleet", role: "service", name: "site-c-local", ephemeral: true });
    const atSite = await connectAs(a.edge.url, local.creds ?? "");
    const got = await crossing(svc, atSite, subjectsToProbe("site-c", "site-d"));
    expect(got).toEqual(["$FABRIC.edge.site-c.x", "_INBOX.site-c.x", "cmd.site-c.d1.x"].sort());
    await atSite.close();
  });
});
