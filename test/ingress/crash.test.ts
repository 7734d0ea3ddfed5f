import { afterAll, beforeAll, describe, expect, it } from "vitest";
import mqtt from "mqtt";
import { jetstream } from "@nats-io/jetstream";
import { pollUntil } from "../../fabric/core/index.js";
import { issueUser, keyPairFromSeed } from "../../identity/index.js";
import { proofPassword } from "../../ingress/index.js";
import { connectAs, Harness, startCli, startTestHub, type RunningCli, type TestHub } from "../harness/index.js";

const h = new Harness();
let hub: TestHub;
afterAll(() => h.dispose());
beforeAll(async () => {
  hub = await startTestHub(h);
});

async function startIngressProcess(port: number, workers = 1): Promise<{ cli: RunningCli; port: number }> {
  const cli = startCli("fabric", ["ingress", "--store", hub.keystoreDir, "--data", hub.dataDir, "--server", ...hub.urls, "--host", "127.0.0.1", "--mqtt-port", String(port), "--mqtt-ws-port", "0", "--workers", String(workers), "--json"]);
  h.defer(async () => {
    await cli.signal("SIGKILL");
  });
  const ports = await cli.json<{ tcp: number }>();
  return { cli, port: ports.tcp };
}

/** Every value stored for a subject, in stream order. */
async function storedValues(subject: string): Promise<number[]> {
  const svc = issueUser(hub.keystore, { account: "fleet", role: "service", name: "reader" });
  const nc = await connectAs(hub.urls, svc.creds ?? "");
  try {
    const c = await jetstream(nc).consumers.get("TELEMETRY", { filter_subjects: [subject] });
    const values: number[] = [];
    const info = await c.info(true);
    let left = info.num_pending;
    while (left > 0) {
      const batch = await c.fetch({ max_messages: Math.min(left, 1_000), expires: 2_000 });
      for await (const m of batch) {
        values.push(m.json<{ value: number }>().value);
        left--;
      }
    }
    return values;
  } finally {
    await nc.close();
  }
}

async function streamWithKill(qos: 1 | 2, device: string): Promise<void> {
  const N = 20_000;
  const first = await startIngressProcess(0);
  const r = issueUser(hub.keystore, { account: "fleet", role: "mqtt", name: device, site: "plant-a" });
  const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${first.port}`, {
    protocolVersion: 4,
    clientId: `crash-${device}`,
    clean: false,
    username: device,
    password: r.jwt,
    reconnectPeriod: 100,
    connectTimeout: 5_000,
  });
  h.defer(() => client.endAsync(true));
  const acked = new Set<number>();
  const errors: unknown[] = [];
  const subject = `telemetry.plant-a.${device}.seq`;
  // publish with a bounded window of unacknowledged messages and kill the ingress from the acknowledgement that
  // makes a tenth: at that instant WINDOW - 1 publishes are in flight and most are not sent yet, however fast or
  // loaded the machine is (firing all N at once let a fast ingress acknowledge every one before a kill landed)
  const WINDOW = 500;
  let next = 0;
  let killed: { exited: Promise<number | null>; acked: Set<number>; sent: number } | undefined;
  const pump = (): void => {
    while (next < N && next - acked.size < WINDOW) {
      const i = next++;
      client
        .publishAsync(`telemetry/plant-a/${device}/seq`, JSON.stringify({ value: i, ts: Date.now() }), { qos })
        .then(() => {
          acked.add(i);
          if (killed === undefined && acked.size >= N / 10) killed = { exited: first.cli.signal("SIGKILL"), acked: new Set(acked), sent: next };
          pump();
        })
        .catch((err: unknown) => errors.push(err));
    }
  };
  pump();
  await pollUntil(() => killed !== undefined, { what: "a tenth of the publishes acknowledged", timeoutMs: 30_000 });
  if (killed === undefined) throw new Error("unreachable: poll returned before the kill");
  await killed.exited;
  const ackedBeforeKill = killed.acked;
  expect(killed.sent - ackedBeforeKill.size).toBe(WINDOW - 1);
  expect(killed.sent).toBeLessThan(N);
  const second = await startIngressProcess(first.port);
  expect(second.port).toBe(first.port);
  await pollUntil(() => acked.size === N || errors.length > 0, { what: "every publish acknowledged", timeoutMs: 60_000 });
  expect(errors).toEqual([]);
  expect(acked.size).toBe(N);
  const values = await storedValues(subject);
  // every message is in the stream exactly once: nothing acknowledged was lost, no retry was stored twice
  expect(values.length).toBe(N);
  expect(new Set(values).size).toBe(N);
  for (const v of ackedBeforeKill) expect(values).toContain(v);
  await client.endAsync();
  await second.cli.signal("SIGTERM");
}

describe("ingress killed mid-stream (SIGKILL)", () => {
  it("QoS 1: every message stored exactly once after the client reconnects and retries", async () => {
    await streamWithKill(1, "crash-q1");
  });

  it("QoS 2: every message stored exactly once after the client reconnects and retries", async () => {
    await streamWithKill(2, "crash-q2");
  });
});

describe("persistent sessions", () => {
  it("keep QoS 1 messages for an offline subscriber and deliver them when it is back", async () => {
    const { port, cli } = await startIngressProcess(0);
    const device = "offline-1";
    const r = issueUser(hub.keystore, { account: "fleet", role: "mqtt", name: device, site: "plant-a" });
    const opts = { protocolVersion: 4 as const, clientId: `sess-${device}`, clean: false, username: device, password: r.jwt, reconnectPeriod: 0 };
    const first = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, opts);
    await first.subscribeAsync(`cmd/plant-a/${device}/#`, { qos: 1 });
    await first.endAsync();
    // while it is away, commands arrive (stored in COMMANDS)
    const svc = issueUser(hub.keystore, { account: "fleet", role: "service", name: "sender" });
    const nc = await connectAs(hub.urls, svc.creds ?? "");
    const js = jetstream(nc);
    for (let i = 0; i < 5; i++) await js.publish(`cmd.plant-a.${device}.set`, `v${i}`);
    await nc.close();
    // back, without subscribing again: the session delivers what it missed, in order, and acknowledges it
    const received: string[] = [];
    const second = mqtt.connect(`mqtt://127.0.0.1:${port}`, opts);
    h.defer(() => second.endAsync(true));
    second.on("message", (_t, payload) => received.push(payload.toString()));
    await pollUntil(() => received.length >= 5, { what: "the five commands" });
    expect(received).toEqual(["v0", "v1", "v2", "v3", "v4"]);
    await second.endAsync();
    // a third connection gets nothing again: they were acknowledged
    const third = mqtt.connect(`mqtt://127.0.0.1:${port}`, opts);
    const again: string[] = [];
    third.on("message", (_t, payload) => again.push(payload.toString()));
    await new Promise<void>((resolve) => third.once("connect", () => resolve()));
    const probe = await connectAs(hub.urls, svc.creds ?? "");
    await jetstream(probe).publish(`cmd.plant-a.${device}.set`, "fresh");
    await probe.close();
    await pollUntil(() => again.length >= 1, { what: "the fresh command" });
    expect(again).toEqual(["fresh"]);
    await third.endAsync();
    await cli.signal("SIGTERM");
  });
});

describe("several ingress instances serving one hub", () => {
  it("share sessions, retained messages and take over a client id across instances", async () => {
    const a = await startIngressProcess(0);
    const b = await startIngressProcess(0);
    const device = "multi-1";
    const r = issueUser(hub.keystore, { account: "fleet", role: "mqtt", name: device, site: "plant-a" });
    const opts = { protocolVersion: 5 as const, clientId: `multi-${device}`, clean: false, properties: { sessionExpiryInterval: 300 }, username: device, password: r.jwt, reconnectPeriod: 0 };
    // a session made on instance A
    const onA = await mqtt.connectAsync(`mqtt://127.0.0.1:${a.port}`, opts);
    h.defer(() => onA.endAsync(true));
    await onA.subscribeAsync(`cmd/plant-a/${device}/#`, { qos: 1 });
    const kicked = new Promise<number | undefined>((resolve) => onA.on("disconnect", (p) => resolve(p.reasonCode)));
    // the same client id on instance B takes the session over: A disconnects it (0x8E), B has the session
    const onB = await mqtt.connectAsync(`mqtt://127.0.0.1:${b.port}`, opts);
    h.defer(() => onB.endAsync(true));
    expect(await kicked).toBe(0x8e);
    const received: string[] = [];
    onB.on("message", (_t, p) => received.push(p.toString()));
    const svc = issueUser(hub.keystore, { account: "fleet", role: "service", name: "multi-sender" });
    const nc = await connectAs(hub.urls, svc.creds ?? "");
    await jetstream(nc).publish(`cmd.plant-a.${device}.go`, "via-b");
    await pollUntil(() => received.includes("via-b"), { what: "the command through instance B" });
    // a retained message set through B is what a subscriber on A gets
    const setter = issueUser(hub.keystore, { account: "fleet", role: "mqtt", name: "multi-setter", site: "plant-a" });
    const pubB = await mqtt.connectAsync(`mqtt://127.0.0.1:${b.port}`, { username: "multi-setter", password: setter.jwt, reconnectPeriod: 0 });
    await pubB.publishAsync("telemetry/plant-a/multi-setter/state", JSON.stringify({ value: 7, ts: Date.now() }), { qos: 1, retain: true });
    await pubB.endAsync();
    const reader = issueUser(hub.keystore, { account: "fleet", role: "service", name: "multi-reader" });
    const kp = keyPairFromSeed(reader.seed ?? "");
    const subA = await mqtt.connectAsync(`mqtt://127.0.0.1:${a.port}`, { clientId: "multi-reader", username: "multi-reader", password: proofPassword(reader.jwt, "multi-reader", "multi-reader", (d) => kp.sign(d)), reconnectPeriod: 0 });
    const retained = new Promise<{ payload: string; retain: boolean }>((resolve) => subA.on("message", (_t, p, packet) => resolve({ payload: p.toString(), retain: packet.retain })));
    await subA.subscribeAsync("telemetry/plant-a/multi-setter/state", { qos: 1 });
    const got = await retained;
    expect(got.retain).toBe(true);
    expect(JSON.parse(got.payload)).toMatchObject({ value: 7 });
    await subA.endAsync();
    await nc.close();
    await a.cli.signal("SIGTERM");
    await b.cli.signal("SIGTERM");
  });
});

describe("wills survive the instance that held them", () => {
  it("another instance sends the will of a client whose ingress was killed", async () => {
    const a = await startIngressProcess(0);
    const b = await startIngressProcess(0);
    const device = "will-orphan";
    const r = issueUser(hub.keystore, { account: "fleet", role: "mqtt", name: device, site: "plant-a" });
    const svc = issueUser(hub.keystore, { account: "fleet", role: "service", name: "will-watch" });
    const nc = await connectAs(hub.urls, svc.creds ?? "");
    const got: string[] = [];
    const sub = nc.subscribe(`events.plant-a.${device}.>`, {
      callback: (_e, m) => {
        got.push(m.string());
      },
    });
    await nc.flush();
    const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${a.port}`, {
      clientId: `orphan-${device}`,
      username: device,
      password: r.jwt,
      reconnectPeriod: 0,
      will: { topic: `events/plant-a/${device}/offline`, payload: Buffer.from("gone"), qos: 1, retain: false },
    });
    client.on("error", () => undefined);
    // the instance dies without a word: its client's will is sent by the other one
    await a.cli.signal("SIGKILL");
    await pollUntil(() => got.includes("gone"), { what: "the will, from instance B", timeoutMs: 20_000 });
    expect(got.filter((x) => x === "gone")).toHaveLength(1);
    sub.unsubscribe();
    await nc.close();
    await client.endAsync(true);
    await b.cli.signal("SIGTERM");
  });
});

describe("fabric ingress --workers", () => {
  it("serves one port from several processes, and stops them all", async () => {
    const { cli, port } = await startIngressProcess(0, 2);
    const names = ["wk-1", "wk-2", "wk-3", "wk-4"];
    const clients = await Promise.all(
      names.map(async (name) => {
        const r = issueUser(hub.keystore, { account: "fleet", role: "mqtt", name, site: "plant-a" });
        return mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { clientId: name, username: name, password: r.jwt, reconnectPeriod: 0 });
      }),
    );
    await Promise.all(clients.map((c, i) => c.publishAsync(`telemetry/plant-a/${names[i] ?? ""}/seq`, JSON.stringify({ value: i, ts: Date.now() }), { qos: 1 })));
    for (const [i, name] of names.entries()) expect(await storedValues(`telemetry.plant-a.${name}.seq`)).toEqual([i]);
    await Promise.all(clients.map((c) => c.endAsync()));
    expect(await cli.signal("SIGTERM")).toBe(0);
  });
});
