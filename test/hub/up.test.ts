import { afterAll, describe, expect, it } from "vitest";
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connectNats } from "../../fabric/core/index.js";
import { connectAs, Harness, runCli, SEED_PATTERN, startCli, type RunningCli } from "../harness/index.js";

const h = new Harness();
afterAll(() => h.dispose());

interface Ready {
  urls: string[];
  keystoreCreated: boolean;
  devCreds: string;
  nodes: { name: string; log: string; ports: { client: number; monitoring: number; leafnode: number } }[];
  streams: { created: string[]; unchanged: string[] };
  grpc: number;
  statusPage: { url: string; tokenFile?: string };
}

const UP_ARGS = ["up", "--host", "127.0.0.1", "--port", "0", "--monitor-port", "0", "--leaf-port", "0", "--mqtt-port", "0", "--mqtt-ws-port", "0", "--grpc-port", "0", "--status-port", "0", "--json"];

function up(home: string, extra: string[] = []): RunningCli {
  const cli = startCli("fabric", [...UP_ARGS, ...extra], { env: { FABRIC_HOME: home } });
  h.defer(async () => {
    await cli.signal("SIGKILL");
  });
  return cli;
}

async function telemetryMessages(url: string, creds: string): Promise<number> {
  const nc = await connectAs(url, creds);
  try {
    return (await (await jetstreamManager(nc)).streams.info("TELEMETRY")).state.messages;
  } finally {
    await nc.close();
  }
}

describe("fabric up", () => {
  it("starts a secured hub, stops on SIGINT, and a second start on the same data keeps everything", async () => {
    const home = h.tempDir("fabric-home-");
    const first = up(home);
    const ready = await first.json<Ready>();
    expect(ready.keystoreCreated).toBe(true);
    expect(ready.grpc).toBeGreaterThan(0); // the gRPC gateway runs, on the port the system picked
    // the status page, on loopback (no token) and the port the system picked
    expect(ready.statusPage.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    expect(ready.statusPage.tokenFile).toBeUndefined();
    expect((await fetch(ready.statusPage.url)).status).toBe(200);
    expect(ready.streams.created).toEqual(expect.arrayContaining(["TELEMETRY", "EVENTS", "AGGREGATES", "COMMANDS", "REJECTED"]));
    const url = ready.urls[0] ?? "";
    const creds = readFileSync(ready.devCreds, "utf8");

    // an anonymous client is refused: the hub runs in operator mode
    await expect(connectNats({ servers: url })).rejects.toThrow(/authorization/i);

    const nc = await connectAs(url, creds);
    const js = jetstream(nc);
    for (let i = 0; i < 5; i++) await js.publish(`telemetry.plant-a.d${i}.temp`, JSON.stringify({ value: i, ts: Date.now() }));
    await (await jetstreamManager(nc)).consumers.add("TELEMETRY", { durable_name: "reader", ack_policy: "explicit" });
    await nc.close();

    // fabric-id knows where the hub is and pushes live
    const revoke = await runCli("fabric-id", ["revoke", "device", "UDR5SKIIATYF3UCS6NP2KWPXC6RBRISEUABANMTQIEJN2FYYSUD5APJZ"], { env: { FABRIC_HOME: home } });
    expect(revoke.code).toBe(0);
    expect(revoke.stderr).toMatch(/pushed account fleet to 1\/1 server/);
    const idStatus = await runCli("fabric-id", ["status", "--json"], { env: { FABRIC_HOME: home } });
    const ids = JSON.parse(idStatus.stdout) as { hubReachable: boolean; accounts: { name: string; pendingPush: boolean; servers: { server: string; current: boolean }[] }[] };
    expect(ids.hubReachable).toBe(true);
    const fleet = ids.accounts.find((a) => a.name === "fleet");
    expect(fleet?.pendingPush).toBe(false);
    expect(fleet?.servers).toEqual([expect.objectContaining({ server: "hub", current: true })]);

    const status = await runCli("fabric", ["status", "--json"], { env: { FABRIC_HOME: home } });
    expect(status.code).toBe(0);
    const st = JSON.parse(status.stdout) as {
      ingress: { connections: number }[];
      servers: { healthy: boolean }[];
      streams: { name: string; messages: number; consumers: { name: string; pending: number }[]; consumerGroups: { purpose: string; count: number }[] }[];
      clientsByRole: Record<string, number>;
    };
    expect(st.servers).toHaveLength(1);
    expect(st.servers[0]?.healthy).toBe(true);
    const telemetry = st.streams.find((s) => s.name === "TELEMETRY");
    expect(telemetry?.messages).toBe(5);
    expect(telemetry?.consumers).toEqual([expect.objectContaining({ name: "reader", pending: 5 })]);
    expect(st.clientsByRole["hub"]).toBe(2); // the hub's own connection and the gRPC gateway's
    // the MQTT ingress fabric up runs is there, with its connections
    expect(st.ingress).toEqual([expect.objectContaining({ connections: 0 })]);
    // the fabric's own consumers by purpose: durables by name, no `oc_…` lines; KV watches counted; listing the
    // ingress instances (the status itself, the will janitor) leaves no ordered consumer behind
    expect(st.streams.flatMap((x) => x.consumers.map((c) => c.name)).filter((n) => n.startsWith("oc_"))).toEqual([]);
    expect(st.streams.find((x) => x.name === "KV_window_defs")?.consumerGroups).toEqual([expect.objectContaining({ purpose: "kv watch (ordered)", count: expect.any(Number) as number })]);
    for (const bucket of ["KV_mqtt_instances", "KV_mqtt_wills"]) expect(st.streams.find((x) => x.name === bucket)?.consumerGroups.map((g) => g.purpose) ?? []).not.toContain("kv keys (ordered)");
    const text = await runCli("fabric", ["status"], { env: { FABRIC_HOME: home } });
    expect(text.stdout).toMatch(/KV_window_defs[^\n]*\n\s+\d+ × kv watch \(ordered\): lag 0/);
    expect(text.stdout).not.toMatch(/oc_/);

    expect(await first.signal("SIGINT")).toBe(0);
    expect(first.stderr()).toMatch(/hub stopped/);

    // again, same FABRIC_HOME: same keystore, same data
    const second = up(home);
    const again = await second.json<Ready>();
    expect(again.keystoreCreated).toBe(false);
    expect(again.streams.unchanged).toEqual(expect.arrayContaining(["TELEMETRY", "EVENTS"]));
    expect(await telemetryMessages(again.urls[0] ?? "", creds)).toBe(5);
    expect(await second.signal("SIGTERM")).toBe(0);

    // no seed in anything it printed or logged
    for (const text of [first.stderr(), first.stdout(), second.stderr(), second.stdout(), readFileSync(ready.nodes[0]?.log ?? "", "utf8")]) {
      expect(text).not.toMatch(SEED_PATTERN);
    }
  });

  it("refuses bad flags with a clear error and exit code 2", async () => {
    const home = h.tempDir("fabric-home-");
    const port = await runCli("fabric", ["up", "--port", "abc"], { env: { FABRIC_HOME: home } });
    expect(port.code).toBe(2);
    expect(port.stderr).toMatch(/--port "abc" is not a port/);
    const nodes = await runCli("fabric", ["up", "--nodes", "2", "--port", "0"], { env: { FABRIC_HOME: home } });
    expect(nodes.code).toBe(2);
    expect(nodes.stderr).toMatch(/hub options\.nodes: .*odd number/);
    const unknown = await runCli("fabric", ["up", "--colour", "blue"], { env: { FABRIC_HOME: home } });
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown option '--colour'/);
  });

  it("refuses a broken keystore, and a data directory of another operator", async () => {
    const home = h.tempDir("fabric-home-");
    mkdirSync(join(home, "keys"), { recursive: true });
    writeFileSync(join(home, "keys", "store.json"), JSON.stringify({ version: 1 }));
    const broken = await runCli("fabric", [...UP_ARGS], { env: { FABRIC_HOME: home } });
    expect(broken.code).toBe(1);
    expect(broken.stderr).toMatch(/FABRIC_ERR_KEYSTORE_CORRUPT.*store\.json.*operator/);

    const a = h.tempDir("fabric-home-");
    const first = up(a);
    await first.json<Ready>();
    expect(await first.signal("SIGINT")).toBe(0);
    const b = h.tempDir("fabric-home-");
    const other = await runCli("fabric", [...UP_ARGS, "--data", join(a, "hub")], { env: { FABRIC_HOME: b } });
    expect(other.code).toBe(2);
    expect(other.stderr).toMatch(/belongs to operator/);
  });
});
