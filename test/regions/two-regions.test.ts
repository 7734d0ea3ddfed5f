/**
 * Two regions (issue 13) on this machine, their link through a proxy with 100 ms one-way delay: live traffic
 * both ways by interest, commands into the other region, EVENTS copied exactly once across cuts and a hub
 * restart, and a revocation in one region kicking the user in the other.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jetstream } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { pollUntil } from "../../fabric/core/index.js";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { renderMetrics } from "../../fabric/core/index.js";
import { issueUser, linkAccountName, pushAccounts, requestSiteTrust, revokeUsers } from "../../identity/index.js";
import { connectAs, Harness, modesBelow, runCli, waitClosed } from "../harness/index.js";
import { connectMqtt, mqttUrl, serviceUser, versionOptions } from "../ingress/mqtt-helpers.js";
import { copySubjects, startTestRegions, type TestRegions } from "./region-helpers.js";

const h = new Harness();
let t: TestRegions;

afterAll(() => h.dispose());
beforeAll(async () => {
  t = await startTestRegions(h, ["a", "b"], [["a", "b"]], { delayMs: 100, mqtt: true });
  await t.waitLinked("a");
  await t.waitLinked("b");
}, 120_000);

describe("two regions", () => {
  it("a subscriber in one region gets what is published in the other, under region.<origin>.…, both ways", async () => {
    const a = await t.service("a");
    const b = await t.service("b");
    const inB = b.subscribe("region.a.telemetry.>");
    const inA = a.subscribe("region.b.telemetry.>");
    // interest crosses the link (100 ms each way): publish until the first arrives
    const first = (async () => {
      for await (const m of inB) return m.subject;
      return undefined;
    })();
    const firstA = (async () => {
      for await (const m of inA) return m.subject;
      return undefined;
    })();
    const pump = setInterval(() => {
      a.publish("telemetry.s1.d1.temp", "21");
      b.publish("telemetry.s2.d2.temp", "22");
    }, 50);
    try {
      expect(await first).toBe("region.a.telemetry.s1.d1.temp");
      expect(await firstA).toBe("region.b.telemetry.s2.d2.temp");
    } finally {
      clearInterval(pump);
    }
  });

  it("an MQTT subscriber in one region gets what a device publishes in the other (region/<origin>/…)", async () => {
    const hubB = t.regions["b"]?.hub;
    if (hubB === undefined) throw new Error("no region b");
    const a = await t.service("a");
    const user = serviceUser(hubB, "mqtt-reader");
    const { client } = await connectMqtt(h, mqttUrl(hubB), { ...versionOptions(5), ...user.auth("reader-b") });
    const got: string[] = [];
    client.on("message", (topic) => got.push(topic));
    await client.subscribeAsync("region/a/telemetry/#", { qos: 0 });
    await pollUntil(
      async () => {
        a.publish("telemetry.s1.d9.rpm", "1200");
        await a.flush();
        return got.includes("region/a/telemetry/s1/d9/rpm");
      },
      { timeoutMs: 20_000, intervalMs: 200, what: "a's reading at b's MQTT subscriber" },
    );
    expect(got.every((topic) => topic.startsWith("region/a/telemetry/"))).toBe(true);
  });

  it("the link credential is for leaf connections only; each link shows in the metrics, fabric status and fabric region ls", async () => {
    const a = t.regions["a"];
    const b = t.regions["b"];
    if (a === undefined || b === undefined) throw new Error("no regions");
    const linkCreds = readFileSync(join(a.hub.dataDir, "regions", "b.creds"), "utf8");
    expect(modesBelow(join(a.hub.dataDir, "regions")).map((f) => f.mode)).toEqual([0o600]);
    await expect(connectAs(b.url, linkCreds)).rejects.toThrow(/authorization/i);
    const metrics = (await renderMetrics()).body;
    expect(metrics).toMatch(/fabric_region_link_up\{peer="b"\} 1/);
    expect(metrics).toMatch(/fabric_region_link_up\{peer="a"\} 1/);
    expect(metrics).toMatch(/fabric_region_backlog_messages\{peer="b",stream="EVENTS"\} \d+/);
    const status = await runCli("fabric", ["status", "--json", "--store", a.hub.keystoreDir, "--data", a.hub.dataDir, "--server", a.url]);
    expect(status.code).toBe(0);
    const regions = (JSON.parse(status.stdout) as { regions?: { peer: string; up: boolean; streams: { copy: string }[] }[] }).regions;
    expect(regions).toEqual([expect.objectContaining({ peer: "b", up: true, streams: [expect.objectContaining({ copy: "REGION_b_EVENTS" })] })]);
    const ls = await runCli("fabric", ["region", "ls", "--store", b.hub.keystoreDir, "--data", b.hub.dataDir, "--server", b.url]);
    expect(ls.stdout).toMatch(/region a: up \(it dials this region\)/);
    expect(ls.stdout).toMatch(/events: copy REGION_a_EVENTS/);
  });

  it("a command from one region reaches a device in the other: stored in that region's COMMANDS, the device asked once", async () => {
    const a = await t.service("a");
    const b = await t.service("b");
    const got: string[] = [];
    a.subscribe("cmd.s1.d1.>", {
      callback: (_e, m) => {
        got.push(m.subject);
      },
    });
    await a.flush();
    // the first answer is the JetStream ack of a's COMMANDS stream (domain a): the command is durable in a
    const ack = await pollUntil(async () => JSON.parse((await b.request("region.a.cmd.s1.d1.reboot", "go", { timeout: 2_000 })).string()) as { stream: string; domain: string }, {
      timeoutMs: 20_000,
      intervalMs: 100,
    });
    expect(ack).toMatchObject({ stream: "COMMANDS", domain: "a" });
    await pollUntil(() => got.length > 0, { timeoutMs: 5_000 });
    expect(got).toEqual(["cmd.s1.d1.reboot"]);
    // a command to a region not linked is answered at once: no responders
    await expect(b.request("region.c.cmd.s1.d1.reboot", "go", { timeout: 2_000 })).rejects.toThrow(/503|no responders/i);
  });

  it("a revocation in one region reaches the other and disconnects the user there", async () => {
    const ksA = t.regions["a"]?.ks;
    if (ksA === undefined) throw new Error("no region a");
    const user = issueUser(ksA, { account: "fleet", role: "service", name: "roaming" });
    const inB = await connectAs(t.regions["b"]?.url ?? "", user.creds ?? "");
    const started = performance.now();
    revokeUsers(ksA, "fleet", user.record.publicKey);
    await pushAccounts(ksA, { servers: [t.regions["a"]?.url ?? ""], accounts: ["fleet"] });
    await waitClosed(inB, 10_000);
    const ms = performance.now() - started;
    // 100 ms each way: one crossing, re-signed and pushed in b
    expect(ms).toBeLessThan(2_000);
    // b's keystore copy took the revocation: a JWT b signs later keeps it
    await pollUntil(() => (t.regions["b"]?.ks.account("fleet").revocations[user.record.publicKey] ?? 0) > 0, { timeoutMs: 5_000, what: "the revocation in b's keystore" });
    await expect(connectAs(t.regions["b"]?.url ?? "", user.creds ?? "")).rejects.toThrow(/authorization|revoked/i);
  });

  it("EVENTS are copied into the other region exactly once, across a cut of the link and a restart of a hub", async () => {
    const a = await t.service("a");
    const b = await t.service("b");
    const jsA = jetstream(a);
    const jsB = jetstream(b);
    const publish = async (js: typeof jsA, site: string, from: number, n: number): Promise<void> => {
      const acks = [];
      for (let i = from; i < from + n; i++) acks.push(js.publish(`events.${site}.dev.e${i}`, `${i}`, { msgID: `${site}-${i}` }));
      await Promise.all(acks);
    };
    await publish(jsA, "sa", 0, 500);
    await publish(jsB, "sb", 0, 500);
    t.proxies["a-b"]?.cut();
    await publish(jsA, "sa", 500, 500);
    await publish(jsB, "sb", 500, 500);
    t.proxies["a-b"]?.restore();
    await publish(jsA, "sa", 1_000, 200);
    // b down and up again on its data (new ports): a's backlog for it waits in a's consumer
    await t.restart("b");
    await publish(jsA, "sa", 1_200, 300);
    await t.waitLinked("b");
    const b2 = await t.service("b");
    const inB = await pollUntil(async () => {
      const s = await copySubjects(b2, "a");
      return s.size >= 1_500 ? s : undefined;
    }, { timeoutMs: 60_000, intervalMs: 250, what: "1 500 events of a in b" });
    const inA = await pollUntil(async () => {
      const s = await copySubjects(a, "b");
      return s.size >= 1_000 ? s : undefined;
    }, { timeoutMs: 60_000, intervalMs: 250, what: "1 000 events of b in a" });
    expect(inB.size).toBe(1_500);
    expect([...inB.values()].every((n) => n === 1)).toBe(true);
    expect([...inB.keys()].every((s) => s.startsWith("region.a.events.sa.dev.e"))).toBe(true);
    expect(inA.size).toBe(1_000);
    expect([...inA.values()].every((n) => n === 1)).toBe(true);
    // nothing a region received is shipped back: a's own EVENTS hold only its own
    const own = await (await import("@nats-io/jetstream")).jetstreamManager(a).then((m) => m.streams.info("EVENTS", { subjects_filter: ">" }));
    expect(Object.keys(own.state.subjects ?? {}).every((s) => s.startsWith("events.sa."))).toBe(true);
  }, 120_000);

  it("after an outage of 11 s, events stored meanwhile arrive within seconds (no stalled source) and a revocation made during it reaches the other region", async () => {
    const a = t.regions["a"];
    const b = t.regions["b"];
    const proxy = t.proxies["a-b"];
    if (a === undefined || b === undefined || proxy === undefined) throw new Error("no regions");
    const user = issueUser(a.ks, { account: "fleet", role: "service", name: "offline-revoked" });
    const inB = await connectAs(b.url, user.creds ?? "");
    const js = jetstream(await t.service("a"));
    const nb = await t.service("b");
    const before = (await copySubjects(nb, "a")).size;
    const cutAt = Date.now();
    proxy.cut();
    await pollUntil(async () => ((await b.hub.regions?.status())?.every((l) => !l.up) === true ? true : undefined), { timeoutMs: 15_000, what: "b sees the link down" });
    await Promise.all(Array.from({ length: 200 }, (_, i) => js.publish(`events.sa.dev.outage${i}`, `${i}`, { msgID: `outage-${i}` })));
    revokeUsers(a.ks, "fleet", user.record.publicKey);
    await pushAccounts(a.ks, { servers: [a.url], accounts: ["fleet"] });
    expect(inB.isClosed()).toBe(false);
    // the outage lasts 11 s: a source that is not durable stalls 30-40 s after an outage over ~10 s
    await pollUntil(() => Date.now() - cutAt >= 11_000, { timeoutMs: 15_000, intervalMs: 250 });
    proxy.restore();
    const restoredAt = Date.now();
    await pollUntil(async () => ((await copySubjects(nb, "a")).size >= before + 200 ? true : undefined), { timeoutMs: 20_000, intervalMs: 100, what: "the outage's events in b" });
    expect(Date.now() - restoredAt).toBeLessThan(10_000);
    expect((await copySubjects(nb, "a")).size).toBe(before + 200);
    // the revocation: announced again when the link is back (and every 10 s while linked)
    await waitClosed(inB, 20_000);
    await pollUntil(() => (b.ks.account("fleet").revocations[user.record.publicKey] ?? 0) > 0, { timeoutMs: 5_000, what: "the revocation in b's keystore" });
  }, 90_000);

  it("a site of a region is handed the link accounts' JWTs with its trust (the tenant account imports from them)", async () => {
    const a = t.regions["a"];
    if (a === undefined) throw new Error("no region a");
    const leaf = issueUser(a.ks, { account: "fleet", role: "leaf", name: "site-leaf", site: "plant-x" });
    const nc = await t.service("a");
    const trust = await requestSiteTrust(nc, leaf.creds ?? "");
    const keys = Object.keys(trust.accounts);
    const link = a.ks.account(linkAccountName("b")).publicKey;
    expect(keys).toContain(link);
    // before the tenant account: a site's server given the tenant account first would stall on its imports
    expect(keys.indexOf(link)).toBeLessThan(keys.indexOf(a.ks.account("fleet").publicKey));
  });

  it("the link credential is least privilege: a server dialing with it cannot write b's own subjects or read b's commands", async () => {
    const a = t.regions["a"];
    const b = t.regions["b"];
    if (a === undefined || b === undefined) throw new Error("no regions");
    // a rogue server that stole a's link credential dials b with it (no JetStream, its own global account)
    const rogue = await h.startServer({
      jetstream: false,
      name: "rogue",
      config: { leafnodes: { remotes: [{ url: `nats-leaf://127.0.0.1:${b.hub.nodes[0]?.ports.leafnode ?? 0}`, credentials: join(a.hub.dataDir, "regions", "b.creds") }] } },
    });
    const nr = await connect({ servers: rogue.url });
    h.defer(() => nr.close());
    const nb = await t.service("b");
    const inB: string[] = [];
    nb.subscribe("telemetry.>", { callback: (_e, m) => void inB.push(m.subject) });
    nb.subscribe("region.a.telemetry.>", { callback: (_e, m) => void inB.push(m.subject) });
    const stolen: string[] = [];
    nr.subscribe("cmd.>", { callback: (_e, m) => void stolen.push(m.subject) });
    nr.subscribe("region.a.cmd.>", { callback: (_e, m) => void stolen.push(m.subject) });
    await nb.flush();
    await nr.flush();
    // what the link may carry arrives (so the rogue's link is up), what it may not never does
    await pollUntil(
      async () => {
        nr.publish("telemetry.s1.d1.spoofed", "x");
        nr.publish("region.a.telemetry.s1.d1.allowed", "x");
        nb.publish("cmd.s2.d2.secret", "x");
        nb.publish("region.a.cmd.s2.d2.for-a", "x");
        await Promise.all([nr.flush(), nb.flush()]);
        return inB.includes("region.a.telemetry.s1.d1.allowed") && stolen.includes("region.a.cmd.s2.d2.for-a");
      },
      { timeoutMs: 20_000, intervalMs: 200, what: "the rogue leaf's allowed subjects" },
    );
    expect(inB.filter((x) => x === "telemetry.s1.d1.spoofed")).toEqual([]);
    expect(stolen.filter((x) => x === "cmd.s2.d2.secret")).toEqual([]);
  });
});
