import { afterAll, describe, expect, it } from "vitest";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { pickFreePorts, processAlive, SERVER_PID_FILE, stopLeftoverServer } from "../../fabric/core/index.js";
import { connectAs, Harness, nodeServerPids, reapOnDispose, runCli, startCli, testLogger, unrelatedProcess, type RunningCli } from "../harness/index.js";

/** A `fabric up` killed with SIGKILL leaves its servers running; the next `fabric up` on the same data stops them and goes on. */
const h = new Harness();
afterAll(() => h.dispose());

interface Ready {
  urls: string[];
  devCreds: string;
  nodes: { name: string; ports: { client: number; monitoring: number } }[];
}

const LEAN = ["--host", "127.0.0.1", "--leaf-port", "0", "--no-mqtt", "--no-grpc", "--no-windows", "--no-metrics", "--no-status-page", "--json"];

function up(home: string, args: string[]): RunningCli {
  const cli = startCli("fabric", ["up", ...LEAN, ...args], { env: { FABRIC_HOME: home } });
  h.defer(async () => void (await cli.signal("SIGKILL")));
  return cli;
}

async function publishEvent(ready: Ready): Promise<{ duplicate: boolean; messages: number }> {
  const nc = await connectAs(ready.urls, readFileSync(ready.devCreds, "utf8"));
  try {
    const ack = await jetstream(nc).publish("events.plant-a.d1.door", "{}", { msgID: "before-the-crash" });
    return { duplicate: ack.duplicate, messages: (await (await jetstreamManager(nc)).streams.info("EVENTS")).state.messages };
  } finally {
    await nc.close();
  }
}

describe("fabric up stopped from a terminal", () => {
  it("Ctrl-C (SIGINT to its whole process group) stops it cleanly: its servers are not hit by the signal, nothing restarts, nothing is left", async () => {
    const home = h.tempDir("fabric-home-");
    const cli = startCli("fabric", ["up", ...LEAN, "--port", "0", "--monitor-port", "0"], { env: { FABRIC_HOME: home }, group: true });
    h.defer(async () => void (await cli.signal("SIGKILL")));
    await cli.json<Ready>();
    const servers = nodeServerPids(join(home, "hub", "hub"));
    expect(servers.length).toBe(1);
    expect(await cli.signalGroup("SIGINT")).toBe(0);
    expect(cli.stderr()).not.toMatch(/nats-server exited; restarting/);
    for (const pid of servers) expect(processAlive(pid)).toBe(false);
  });
});

describe("fabric up after a crash", () => {
  it("stops the nats-server a SIGKILLed fabric up left, binds the same ports and keeps the data; an unrelated pid is left alone", async () => {
    const home = h.tempDir("fabric-home-");
    const nodeDir = join(home, "hub", "hub");
    reapOnDispose(h, [nodeDir]);
    const [port, monitor] = await pickFreePorts(2, "127.0.0.1");
    const ports = ["--port", String(port), "--monitor-port", String(monitor)];
    const first = up(home, ports);
    const ready = await first.json<Ready>();
    expect(await publishEvent(ready)).toEqual({ duplicate: false, messages: 1 });
    const [orphan, ...more] = nodeServerPids(nodeDir);
    expect(more).toEqual([]);
    await first.signal("SIGKILL");
    expect(processAlive(orphan ?? 0)).toBe(true); // the server outlived its supervisor
    // a ports file whose pid now belongs to another program (pid reuse)
    const sleeper = unrelatedProcess(h);
    writeFileSync(join(nodeDir, "run", `nats-server_${sleeper}.ports`), "{}");

    const second = up(home, ports);
    const again = await second.json<Ready>(); // before the fix: "address already in use" on the monitoring port
    expect(again.nodes[0]?.ports).toMatchObject({ client: port, monitoring: monitor });
    expect(processAlive(orphan ?? 0)).toBe(false);
    const [current, ...others] = nodeServerPids(nodeDir);
    expect(others).toEqual([]);
    expect(current).not.toBe(orphan);
    expect(JSON.parse(readFileSync(join(nodeDir, SERVER_PID_FILE), "utf8"))).toMatchObject({ pid: current, configFile: join(nodeDir, "nats-server.conf") });
    expect(second.stderr()).toMatch(/left over from an earlier run: stopping it/);
    expect(processAlive(sleeper)).toBe(true);
    // the message stored before the crash is there, and so is its dedupe window
    expect(await publishEvent(again)).toEqual({ duplicate: true, messages: 1 });
    expect(await second.signal("SIGTERM")).toBe(0);
    expect(existsSync(join(nodeDir, SERVER_PID_FILE))).toBe(false); // a clean stop leaves no pid file
  });

  it("does the same for the three servers of --nodes 3", async () => {
    const home = h.tempDir("fabric-home-");
    const nodeDirs = [1, 2, 3].map((i) => join(home, "hub", `hub-${i}`));
    reapOnDispose(h, nodeDirs);
    const args = ["--nodes", "3", "--port", "0", "--monitor-port", "0", "--cluster-port", "0"];
    const first = up(home, args);
    const ready = await first.json<Ready>();
    expect(await publishEvent(ready)).toEqual({ duplicate: false, messages: 1 });
    const orphans = nodeDirs.flatMap((d) => nodeServerPids(d));
    expect(orphans).toHaveLength(3);
    await first.signal("SIGKILL");
    expect(orphans.filter((p) => processAlive(p))).toHaveLength(3);

    const second = up(home, args);
    const again = await second.json<Ready>();
    expect(orphans.filter((p) => processAlive(p))).toEqual([]);
    expect(nodeDirs.map((d) => nodeServerPids(d).length)).toEqual([1, 1, 1]);
    expect(await publishEvent(again)).toEqual({ duplicate: true, messages: 1 });
    const status = await runCli("fabric", ["status", "--json"], { env: { FABRIC_HOME: home } });
    expect(status.code, status.stderr).toBe(0);
    expect((JSON.parse(status.stdout) as { servers: { healthy: boolean }[] }).servers.map((s) => s.healthy)).toEqual([true, true, true]);
    expect(await second.signal("SIGTERM")).toBe(0);
  });

  it("never signals a process the pid file names unless it runs nats-server with this node's config", async () => {
    const nodeDir = h.tempDir("fabric-node-");
    const configFile = join(nodeDir, "nats-server.conf");
    writeFileSync(configFile, "{}");
    const pidFile = join(nodeDir, SERVER_PID_FILE);
    const record = (pid: number): string => JSON.stringify({ pid, configFile, configSha256: "0".repeat(64), portsFile: join(nodeDir, "run", `nats-server_${pid}.ports`), startedAt: 0 });
    // a pid reused by another program
    const sleeper = unrelatedProcess(h);
    writeFileSync(pidFile, record(sleeper));
    expect(await stopLeftoverServer({ pidFile, configFile, portsDir: join(nodeDir, "run"), logger: testLogger() })).toEqual([]);
    expect(processAlive(sleeper)).toBe(true);
    expect(existsSync(pidFile)).toBe(false);
    // a pid reused by a nats-server of another config
    const other = await h.startServer({ jetstream: false });
    writeFileSync(pidFile, record(other.process.pid));
    expect(await stopLeftoverServer({ pidFile, configFile, portsDir: join(nodeDir, "run"), logger: testLogger() })).toEqual([]);
    expect(other.process.isRunning()).toBe(true);
    // a damaged pid file is ignored
    writeFileSync(pidFile, "not json");
    expect(await stopLeftoverServer({ pidFile, configFile, portsDir: join(nodeDir, "run"), logger: testLogger() })).toEqual([]);
  });
});
