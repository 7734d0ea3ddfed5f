import { afterAll, beforeAll, describe, expect, it } from "vitest";
import mqtt, { type MqttClient } from "mqtt";
import { jetstreamManager } from "@nats-io/jetstream";
import { issueUser, pushAccounts, revokeUsers } from "../../identity/index.js";
import { connectAs, Harness, startTestHub, type TestHub } from "../harness/index.js";

const h = new Harness();
let hub: TestHub;
let url: string;
afterAll(() => h.dispose());
beforeAll(async () => {
  hub = await startTestHub(h, { mqtt: true });
  url = `mqtt://127.0.0.1:${hub.mqtt?.tcp ?? 0}`;
});

function mqttDevice(name: string, site = "plant-a"): { jwt: string } {
  const r = issueUser(hub.keystore, { account: "fleet", role: "mqtt", name, site });
  return { jwt: r.jwt };
}

async function connect(name: string, jwt: string, version: 3 | 4 | 5 = 4, extra: mqtt.IClientOptions = {}): Promise<MqttClient> {
  const c = await mqtt.connectAsync(url, { protocolVersion: version, clientId: `c-${name}-${version}`, username: name, password: jwt, reconnectPeriod: 0, ...extra });
  h.defer(() => c.endAsync(true));
  return c;
}

async function streamCount(stream: string, subject: string): Promise<number> {
  const svc = issueUser(hub.keystore, { account: "fleet", role: "service", name: "counter" });
  const nc = await connectAs(hub.urls, svc.creds ?? "");
  try {
    const info = await (await jetstreamManager(nc)).streams.info(stream, { subjects_filter: subject });
    return info.state.subjects?.[subject] ?? 0;
  } finally {
    await nc.close();
  }
}

describe("MQTT ingress", () => {
  it("stores a QoS 1 publish before the PUBACK, for 3.1.1 and 5.0", async () => {
    const d = mqttDevice("m1");
    for (const v of [4, 5] as const) {
      const c = await connect("m1", d.jwt, v);
      await c.publishAsync("telemetry/plant-a/m1/temp", JSON.stringify({ value: 20 + v, ts: Date.now() }), { qos: 1 });
      await c.endAsync();
    }
    expect(await streamCount("TELEMETRY", "telemetry.plant-a.m1.temp")).toBe(2);
  });

  it("refuses a publish outside the device's permissions (5.0: PUBACK 0x87) and stores nothing", async () => {
    const d = mqttDevice("m2");
    const c = await connect("m2", d.jwt, 5);
    await expect(c.publishAsync("telemetry/plant-a/other/temp", JSON.stringify({ value: 1, ts: Date.now() }), { qos: 1 })).rejects.toThrow(/not authori[sz]ed|135/i);
    expect(await streamCount("TELEMETRY", "telemetry.plant-a.other.temp")).toBe(0);
  });

  it("refuses a subscription outside the permissions (0x80) and delivers the device's own commands", async () => {
    const d = mqttDevice("m3");
    const c = await connect("m3", d.jwt, 4);
    // MQTT.js turns a 0x80 grant into an error
    await expect(c.subscribeAsync("cmd/plant-a/other/#", { qos: 1 })).rejects.toThrow(/subscribe error/i);
    const granted = await c.subscribeAsync("cmd/plant-a/m3/#", { qos: 1 });
    expect(granted[0]?.qos).toBe(1);
    const got = new Promise<{ topic: string; payload: string }>((resolve) => c.on("message", (topic, payload) => resolve({ topic, payload: payload.toString() })));
    const svc = issueUser(hub.keystore, { account: "fleet", role: "service", name: "commander" });
    const nc = await connectAs(hub.urls, svc.creds ?? "");
    nc.publish("cmd.plant-a.m3.reboot", "now");
    await nc.flush();
    expect(await got).toEqual({ topic: "cmd/plant-a/m3/reboot", payload: "now" });
    await nc.close();
  });

  it("refuses bad credentials with the right codes", async () => {
    const d = mqttDevice("m4");
    await expect(mqtt.connectAsync(url, { protocolVersion: 4, clientId: "x", username: "m4", password: "nonsense", reconnectPeriod: 0 })).rejects.toThrow(/bad user ?name or password|Connection refused/i);
    await expect(mqtt.connectAsync(url, { protocolVersion: 5, clientId: "y", username: "someone-else", password: d.jwt, reconnectPeriod: 0 })).rejects.toThrow(/bad user ?name or password|134/i);
  });

  it("disconnects a connected device when it is revoked (5.0 with reason 0x87)", async () => {
    const d = mqttDevice("m5");
    const c = await connect("m5", d.jwt, 5);
    const disconnected = new Promise<number | undefined>((resolve) => c.on("disconnect", (p) => resolve(p.reasonCode)));
    revokeUsers(hub.keystore, "fleet", "m5", "mqtt");
    const t0 = Date.now();
    await pushAccounts(hub.keystore, { servers: hub.urls, accounts: ["fleet"] });
    expect(await disconnected).toBe(0x87);
    expect(Date.now() - t0).toBeLessThan(2_000);
    await expect(mqtt.connectAsync(url, { protocolVersion: 5, clientId: "m5-again", username: "m5", password: d.jwt, reconnectPeriod: 0 })).rejects.toThrow(/not authori[sz]ed|135/i);
  });

  it("asks a non-bearer credential for a proof of possession", async () => {
    const svc = issueUser(hub.keystore, { account: "fleet", role: "service", name: "retainer" });
    const c = await mqtt.connectAsync(url, { protocolVersion: 5, clientId: "retainer", username: "retainer", password: `${svc.jwt}`, reconnectPeriod: 0 }).catch((e: unknown) => e);
    // a service credential is not a bearer token: it needs a proof of possession
    expect(String(c)).toMatch(/bad user ?name or password|134/i);
  });
});
