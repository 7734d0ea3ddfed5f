import { afterAll, describe, expect, it } from "vitest";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { pollUntil } from "../../fabric/core/index.js";
import { issueUser } from "../../identity/index.js";
import { connectAs, Harness, makeTestCerts, runCli, startTestHub } from "../harness/index.js";

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

  it("puts TLS on every host's leaf listener, checking the files when they are on this machine", async () => {
    const home = h.tempDir("fabric-home-");
    expect((await runCli("fabric-id", ["init"], { env: { FABRIC_HOME: home } })).code).toBe(0);
    const hosts = ["--hosts", "10.0.0.1", "10.0.0.2", "10.0.0.3"];
    const leafTls = (cfgDir: string): { cert_file: string; key_file: string; ca_file?: string; verify?: boolean } =>
      (JSON.parse(readFileSync(join(cfgDir, "hub-2.conf"), "utf8").replace(/^#.*\n/, "")) as { leafnodes: { tls: { cert_file: string; key_file: string; ca_file?: string; verify?: boolean } } }).leafnodes.tls;
    // the files are here: nats-server -t loads them
    const certs = makeTestCerts(h.tempDir("leaf-certs-"));
    const here = join(home, "here");
    const r = await runCli("fabric", ["config", "hub", ...hosts, "--out", here, "--leaf-tls-cert", certs.server.cert, "--leaf-tls-key", certs.server.key, "--leaf-tls-ca", certs.ca], { env: { FABRIC_HOME: home } });
    expect(r.code).toBe(0);
    expect(r.stderr).not.toMatch(/checked without them/);
    expect(leafTls(here)).toMatchObject({ cert_file: certs.server.cert, key_file: certs.server.key, ca_file: certs.ca, verify: true });
    // a key that is not a key: the check refuses it
    const broken = await runCli("fabric", ["config", "hub", ...hosts, "--out", join(home, "broken"), "--leaf-tls-cert", certs.server.cert, "--leaf-tls-key", certs.ca], { env: { FABRIC_HOME: home } });
    expect(broken.code).not.toBe(0);
    expect(broken.stderr).toMatch(/nats-server refused the config/);
    // paths that exist only on the hosts: written, checked without them, and named
    const there = join(home, "there");
    const remote = await runCli("fabric", ["config", "hub", ...hosts, "--out", there, "--leaf-tls-cert", "/etc/fabric/leaf.pem", "--leaf-tls-key", "/etc/fabric/leaf-key.pem"], { env: { FABRIC_HOME: home } });
    expect(remote.code).toBe(0);
    expect(remote.stderr).toMatch(/checked without them: \/etc\/fabric\/leaf\.pem, \/etc\/fabric\/leaf-key\.pem/);
    expect(leafTls(there)).toEqual({ cert_file: "/etc/fabric/leaf.pem", key_file: "/etc/fabric/leaf-key.pem", timeout: 5 });
    expect(readdirSync(there).sort()).toEqual(["hub-1.conf", "hub-2.conf", "hub-3.conf"]);
    // relative paths mean nothing on another host; a half pair is refused
    const relative = await runCli("fabric", ["config", "hub", ...hosts, "--out", join(home, "rel"), "--leaf-tls-cert", "leaf.pem", "--leaf-tls-key", "/etc/k.pem"], { env: { FABRIC_HOME: home } });
    expect(relative.code).toBe(2);
    expect(relative.stderr).toMatch(/cluster config\.leafTls: leaf TLS files are absolute paths/);
    const half = await runCli("fabric", ["config", "hub", ...hosts, "--out", join(home, "half"), "--leaf-tls-cert", "/etc/c.pem"], { env: { FABRIC_HOME: home } });
    expect(half.code).toBe(2);
    expect(half.stderr).toMatch(/--leaf-tls-cert and --leaf-tls-key go together/);
  });
});
