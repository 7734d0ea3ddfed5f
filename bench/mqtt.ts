import { spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { connect as netConnect } from "node:net";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { headers as natsHeaders } from "@nats-io/transport-node";
import { JetStreamPublisher, pickFreePorts, pollUntil, projectRoot } from "../fabric/core/index.js";
import { issueUser } from "../identity/index.js";
import { connectAs, spawnMosquitto, startCli, startTestHub, type Harness } from "../test/harness/index.js";
import { fmt, percentile } from "./lib.js";
import { openIdle, runLoad, type LoadResult } from "./mqtt-load.js";

const DURATION_MS = 4_000;
const WINDOW = 64;
const IDLE_CONNECTIONS = 10_000;

interface Target {
  name: string;
  port: number;
  pid: number;
  credentials?: (n: number) => { username: string; password: string };
  topic: (n: number) => string;
  /** Messages stored by the broker for what was acknowledged (JetStream), when it stores. */
  stored?: () => Promise<number>;
  /** The store path alone, from one Node process: what no Node ingress acking after the store can pass. */
  ceiling?: () => Promise<{ rate: number; p50: number; p99: number }>;
}

export interface MqttRow {
  target: string;
  qos: 0 | 1 | 2;
  connections: number;
  rate: number;
  p50: number;
  p99: number;
  storedOk: string;
}

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m?.[1] ?? 0) * 1024;
}

async function waitPort(port: number): Promise<void> {
  await pollUntil(
    () =>
      new Promise<boolean>((resolve) => {
        const s = netConnect({ port, host: "127.0.0.1" }, () => {
          s.destroy();
          resolve(true);
        });
        s.on("error", () => resolve(false));
      }),
    { what: `port ${port}` },
  );
}

const payload = (i: number): Buffer => {
  const base = JSON.stringify({ value: i % 1000, ts: 1_700_000_000_000 + i, pad: "" });
  return Buffer.from(base.replace('"pad":""', `"pad":"${"x".repeat(Math.max(0, 100 - base.length))}"`));
};

async function targets(h: Harness): Promise<Target[]> {
  // the fabric: hub (nats-server) + the ingress as a process of its own
  const hub = await startTestHub(h, { identityService: false });
  const ingress = startCli("fabric", ["ingress", "--store", hub.keystoreDir, "--data", hub.dataDir, "--server", ...hub.urls, "--host", "127.0.0.1", "--mqtt-port", "0", "--mqtt-ws-port", "0", "--json"], {
    env: { FABRIC_LOG_LEVEL: "warn" },
  });
  h.defer(async () => {
    await ingress.signal("SIGTERM");
  });
  const fabricPort = (await ingress.json<{ tcp: number }>()).tcp;
  const jwts = new Map<number, string>();
  const jwtFor = (n: number): string => {
    let j = jwts.get(n);
    if (j === undefined) {
      j = issueUser(hub.keystore, { account: "fleet", role: "mqtt", name: `load-${n}`, site: "bench" }).jwt;
      jwts.set(n, j);
    }
    return j;
  };
  const svc = issueUser(hub.keystore, { account: "fleet", role: "service", name: "bench-reader" }).creds ?? "";
  const fabric: Target = {
    name: "fabric ingress → JetStream",
    port: fabricPort,
    pid: ingress.pid,
    credentials: (n) => ({ username: `load-${n}`, password: jwtFor(n) }),
    topic: (n) => `telemetry/bench/load-${n}/v`,
    stored: async () => {
      const nc = await connectAs(hub.urls, svc);
      try {
        return (await (await jetstreamManager(nc)).streams.info("TELEMETRY")).state.messages;
      } finally {
        await nc.close();
      }
    },
    ceiling: async () => {
      const nc = await connectAs(hub.urls, svc);
      const publisher = new JetStreamPublisher(nc, { maxOutstanding: WINDOW * 4 });
      const lat: number[] = [];
      let n = 0;
      let inflight = 0;
      let freed: (() => void) | undefined;
      const t0 = performance.now();
      while (performance.now() - t0 < DURATION_MS) {
        const h2 = natsHeaders();
        h2.set("Fabric-Mqtt-Client", "ceiling");
        h2.set("Fabric-Mqtt-Qos", "1");
        const start = performance.now();
        inflight++;
        void publisher.publish(`telemetry.bench.ceiling.v`, payload(n), { msgId: `ceiling-${n++}`, headers: h2 }).then(() => {
          lat.push(performance.now() - start);
          inflight--;
          freed?.();
        });
        if (inflight >= WINDOW * 4) await new Promise<void>((r) => (freed = r));
      }
      while (inflight > 0) await new Promise<void>((r) => (freed = r));
      const rate = (n * 1000) / (performance.now() - t0);
      publisher.close();
      await nc.close();
      return { rate, p50: percentile(lat, 50), p99: percentile(lat, 99) };
    },
  };
  // nats-server's own MQTT listener (it stores QoS 1/2 in its $MQTT_msgs stream after acknowledging)
  const nats = await h.startServer({ name: "nats-mqtt", config: { mqtt: { port: -1, host: "127.0.0.1" } } });
  const natsMqtt: Target = { name: "nats-server MQTT listener", port: nats.ports.mqtt, pid: nats.process.pid, topic: (n) => `telemetry/bench/load-${n}/v` };
  // Mosquitto, in memory
  const [mport] = await pickFreePorts(1);
  const conf = join(h.tempDir("mosq-"), "mosquitto.conf");
  writeFileSync(conf, `listener ${mport} 127.0.0.1\nallow_anonymous true\nmax_inflight_messages 0\nmax_queued_messages 0\nmax_connections -1\n`);
  const mosq = spawnMosquitto("mosquitto", ["-c", conf]);
  h.defer(() => {
    mosq.child.kill("SIGKILL");
  });
  await waitPort(mport ?? 0);
  const mosquitto: Target = { name: "Mosquitto 2.0 (memory)", port: mport ?? 0, pid: mosq.child.pid ?? 0, topic: (n) => `telemetry/bench/load-${n}/v` };
  // the load generator's own ceiling: a sink that acknowledges at once
  const sinkProc = spawn(process.execPath, ["--import", "tsx", join(projectRoot(), "bench", "mqtt-sink.ts")], { stdio: ["ignore", "pipe", "inherit"] });
  h.defer(() => {
    sinkProc.kill("SIGKILL");
  });
  const sinkPort = await new Promise<number>((resolve) => sinkProc.stdout.once("data", (d: Buffer) => resolve((JSON.parse(d.toString()) as { port: number }).port)));
  const sink: Target = { name: "load generator ceiling (ack-only sink)", port: sinkPort, pid: sinkProc.pid ?? 0, topic: (n) => `t/${n}` };
  return [fabric, natsMqtt, mosquitto, sink];
}

export async function benchMqtt(h: Harness): Promise<{ rows: MqttRow[]; memory: { target: string; perConnBytes: number }[]; ceiling: { rate: number; p50: number; p99: number } | undefined }> {
  const all = await targets(h);
  const rows: MqttRow[] = [];
  const ceiling = await all[0]?.ceiling?.();
  if (ceiling !== undefined) console.log(`  store ceiling (JetStream publish from one Node process, no MQTT): ${fmt(ceiling.rate)} msg/s p50 ${fmt(ceiling.p50, 2)} ms`);
  for (const qos of [0, 1, 2] as const) {
    for (const connections of [4, 100]) {
      for (const t of all) {
        const before = t.stored === undefined ? 0 : await t.stored();
        const r: LoadResult = await runLoad({
          port: t.port,
          connections,
          qos,
          durationMs: DURATION_MS,
          window: Math.max(4, Math.floor((WINDOW * 4) / connections)),
          payload,
          topic: t.topic,
          ...(t.credentials === undefined ? {} : { credentials: t.credentials }),
        });
        let storedOk = "–";
        if (t.stored !== undefined) {
          const stored = qos === 0 ? await pollUntil(async () => ((await t.stored?.()) ?? 0) - before >= r.acked * 0.99 && (await t.stored?.()), { timeoutMs: 10_000 }).then(() => true, () => false) : (await t.stored()) - before === r.acked;
          storedOk = stored ? "yes" : "**no**";
          if (qos > 0 && !stored) console.error(`${t.name} QoS ${qos}: acknowledged ${r.acked} but stored ${(await t.stored()) - before}`);
        }
        const row = { target: t.name, qos, connections, rate: r.rate, p50: percentile(r.latenciesMs, 50), p99: percentile(r.latenciesMs, 99), storedOk };
        console.log(`  ${row.target.padEnd(40)} QoS ${qos} ×${connections}: ${fmt(row.rate)} msg/s p50 ${fmt(row.p50, 2)} ms p99 ${fmt(row.p99, 2)} ms stored ${storedOk}`);
        rows.push(row);
      }
    }
  }
  const memory: { target: string; perConnBytes: number }[] = [];
  for (const t of all.slice(0, 3)) {
    const before = rssBytes(t.pid);
    const sockets = await openIdle({ port: t.port, ...(t.credentials === undefined ? {} : { credentials: t.credentials }) }, IDLE_CONNECTIONS);
    await new Promise((r) => setTimeout(r, 500)); // let the broker settle its buffers before reading RSS
    const after = rssBytes(t.pid);
    memory.push({ target: t.name, perConnBytes: (after - before) / IDLE_CONNECTIONS });
    console.log(`  ${t.name}: ${IDLE_CONNECTIONS} idle connections, ${fmt((after - before) / IDLE_CONNECTIONS)} bytes each`);
    for (const s of sockets) s.destroy();
  }
  return { rows, memory, ceiling };
}

export function mqttMarkdown(r: Awaited<ReturnType<typeof benchMqtt>>): string {
  const lines = ["| broker | QoS | connections | msg/s | vs nats-server MQTT | p50 ack (ms) | p99 ack (ms) | every ack stored |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | :---: |"];
  for (const row of r.rows) {
    const anchor = r.rows.find((x) => x.qos === row.qos && x.connections === row.connections && x.target.startsWith("nats-server"));
    const ratio = anchor === undefined ? "" : `${fmt(row.rate / anchor.rate, 2)}×`;
    const lat = row.qos === 0 ? "–" : fmt(row.p50, 2);
    const lat99 = row.qos === 0 ? "–" : fmt(row.p99, 2);
    lines.push(`| ${row.target} | ${row.qos} | ${row.connections} | ${fmt(row.rate)} | ${ratio} | ${lat} | ${lat99} | ${row.storedOk} |`);
  }
  for (const connections of [4, 100]) {
    const fabric = r.rows.find((x) => x.qos === 1 && x.connections === connections && x.target.startsWith("fabric"));
    const nats = r.rows.find((x) => x.qos === 1 && x.connections === connections && x.target.startsWith("nats-server"));
    if (fabric === undefined || nats === undefined) continue;
    const met = fabric.rate >= nats.rate && fabric.rate >= 50_000;
    lines.push(
      "",
      `Goal, QoS 1 with ${connections} connections (stored before PUBACK, at least nats-server's listener and 50 000 msg/s): ${met ? "**met**" : "**not met**"} (${fmt(fabric.rate)} msg/s against ${fmt(nats.rate)}).`,
    );
  }
  if (r.ceiling !== undefined) {
    lines.push(
      "",
      `Store ceiling: the ingress's store path alone (JetStream publishes from one Node process with a Nats-Msg-Id and the ingress's headers, ${WINDOW * 4} outstanding, no MQTT, nothing else running): ${fmt(r.ceiling.rate)} msg/s, p50 ${fmt(r.ceiling.p50, 2)} ms. No Node ingress that acknowledges after the store passes this here, before any MQTT work is added.`,
    );
  }
  lines.push("", "| broker | memory per idle connection (10 000 connected) |", "| --- | ---: |");
  for (const m of r.memory) lines.push(`| ${m.target} | ${fmt(m.perConnBytes / 1024, 1)} KiB |`);
  return lines.join("\n");
}
