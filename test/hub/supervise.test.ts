import { afterAll, describe, expect, it } from "vitest";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { pollUntil } from "../../fabric/core/index.js";
import { issueUser } from "../../identity/index.js";
import { connectAs, Harness, runCli, startTestHub } from "../harness/index.js";

const h = new Harness();
afterAll(() => h.dispose());

describe("hub supervision", () => {
  it("restarts a killed nats-server on the same port with its data", async () => {
    const hub = await startTestHub(h);
    const creds = issueUser(hub.keystore, { account: "fleet", role: "service", name: "svc" }).creds ?? "";
    const nc = await connectAs(hub.urls, creds, { reconnect: true });
    await jetstream(nc).publish("events.plant-a.d1.door", "{}", { msgID: "e-1" });
    const [pid] = hub.serverPids();
    process.kill(pid ?? 0, "SIGKILL");
    const newPid = await pollUntil(() => {
      const p = hub.serverPids()[0];
      return p !== undefined && p !== pid ? p : undefined;
    }, { what: "the supervisor to restart nats-server" });
    expect(newPid).not.toBe(pid);
    // the client reconnects to the same URL, and the stream (and its dedupe window) survived
    const js = jetstream(nc);
    const dup = await pollUntil(() => js.publish("events.plant-a.d1.door", "{}", { msgID: "e-1", timeout: 1_000 }), { what: "a publish after the restart" });
    expect(dup.duplicate).toBe(true);
    const info = await (await jetstreamManager(nc)).streams.info("EVENTS");
    expect(info.state.messages).toBe(1);
    await nc.close();
  });

  it("runs a 3-node cluster with the streams replicated three times", async () => {
    const hub = await startTestHub(h, { nodes: 3 });
    const creds = issueUser(hub.keystore, { account: "fleet", role: "service", name: "svc" }).creds ?? "";
    const nc = await connectAs(hub.urls, creds);
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info("TELEMETRY");
    expect(info.config.num_replicas).toBe(3);
    // a leader and two replicas that have caught up
    const current = await pollUntil(async () => {
      const i = await jsm.streams.info("TELEMETRY");
      const replicas = (i.cluster?.replicas ?? []).filter((r) => r.current);
      return i.cluster?.leader !== undefined && replicas.length === 2 ? replicas : undefined;
    }, { what: "two current replicas" });
    expect(current).toHaveLength(2);
    await nc.close();
  });
});

describe("fabric config hub", () => {
  it("writes one checked config per host of a multi-host cluster", async () => {
    const home = h.tempDir("fabric-home-");
    expect((await runCli("fabric-id", ["init"], { env: { FABRIC_HOME: home } })).code).toBe(0);
    const out = join(home, "cfg");
    const r = await runCli("fabric", ["config", "hub", "--hosts", "10.0.0.1", "10.0.0.2", "hub-c.example", "--out", out], { env: { FABRIC_HOME: home } });
    expect(r.code).toBe(0);
    for (const n of [1, 2, 3]) expect(existsSync(join(out, `hub-${n}.conf`))).toBe(true);
    const cfg = JSON.parse(readFileSync(join(out, "hub-3.conf"), "utf8").replace(/^#.*\n/, "")) as { cluster: { routes: string[]; advertise: string }; resolver: { type: string } };
    expect(cfg.cluster.routes).toEqual(["nats-route://10.0.0.1:6222", "nats-route://10.0.0.2:6222"]);
    expect(cfg.cluster.advertise).toBe("hub-c.example:6222");
    expect(cfg.resolver.type).toBe("full");
    const two = await runCli("fabric", ["config", "hub", "--hosts", "a", "b", "--out", out], { env: { FABRIC_HOME: home } });
    expect(two.code).toBe(2);
    expect(two.stderr).toMatch(/cluster config\.hosts: a JetStream cluster needs at least 3 hosts/);
  });
});
