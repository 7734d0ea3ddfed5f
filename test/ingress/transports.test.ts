import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import mqtt from "mqtt";
import { jetstreamManager } from "@nats-io/jetstream";
import { parseInput, pollUntil } from "../../fabric/core/index.js";
import { issueUser, keyPairFromSeed } from "../../identity/index.js";
import { ingressOptionsSchema, proofPassword } from "../../ingress/index.js";
import { connectAs, Harness, startTestHub, type TestHub } from "../harness/index.js";

const h = new Harness();
let hub: TestHub;
let ca: string;
afterAll(() => h.dispose());
beforeAll(async () => {
  // a self-signed certificate for 127.0.0.1, made for this run
  const dir = h.tempDir("fabric-tls-");
  const cert = join(dir, "cert.pem");
  const key = join(dir, "key.pem");
  execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"], { stdio: "ignore" });
  ca = cert;
  hub = await startTestHub(h, {
    mqtt: true,
    mqttTls: { cert, key },
    ingress: {
      mappings: [
        { topic: "{org}/{site}/{type}/{device}/reading", subject: "telemetry.{site}.{device}.{type}", payload: { value: "data.v", ts: "t", tsUnit: "s" } },
      ],
    },
  });
});

async function messages(subject: string): Promise<{ data: string; reason: string | undefined }[]> {
  const svc = issueUser(hub.keystore, { account: "fleet", role: "service", name: "reader" });
  const nc = await connectAs(hub.urls, svc.creds ?? "");
  try {
    const jsm = await jetstreamManager(nc);
    const stream = subject.startsWith("rejected.") ? "REJECTED" : "TELEMETRY";
    const info = await jsm.streams.info(stream, { subjects_filter: subject });
    const out: { data: string; reason: string | undefined }[] = [];
    if ((info.state.subjects?.[subject] ?? 0) === 0) return out;
    const m = await jsm.streams.getMessage(stream, { last_by_subj: subject });
    if (m !== null) out.push({ data: m.string(), reason: m.header.get("Fabric-Reject-Reason") || undefined });
    return out;
  } finally {
    await nc.close();
  }
}

describe("MQTT over TLS and WebSocket", () => {
  it("accepts a device over TLS (certificate checked by the client)", async () => {
    const jwt = issueUser(hub.keystore, { account: "fleet", role: "mqtt", name: "tls-1", site: "plant-a" }).jwt;
    const c = await mqtt.connectAsync(`mqtts://127.0.0.1:${hub.mqtt?.tls ?? 0}`, { ca: [readFileSync(ca)], rejectUnauthorized: true, username: "tls-1", password: jwt, reconnectPeriod: 0 });
    await c.publishAsync("telemetry/plant-a/tls-1/temp", JSON.stringify({ value: 1, ts: Date.now() }), { qos: 1 });
    await c.endAsync();
    expect(await messages("telemetry.plant-a.tls-1.temp")).toHaveLength(1);
  });

  it("accepts a browser-style client over WebSocket, for 3.1.1 and 5.0", async () => {
    const jwt = issueUser(hub.keystore, { account: "fleet", role: "mqtt", name: "ws-1", site: "plant-a" }).jwt;
    for (const protocolVersion of [4, 5] as const) {
      const c = await mqtt.connectAsync(`ws://127.0.0.1:${hub.mqtt?.ws ?? 0}/mqtt`, { protocolVersion, username: "ws-1", password: jwt, reconnectPeriod: 0, clientId: `ws-1-${protocolVersion}` });
      await c.subscribeAsync("cmd/plant-a/ws-1/#", { qos: 1 });
      const got = new Promise<string>((resolve) => c.on("message", (_t, p) => resolve(p.toString())));
      const svc = issueUser(hub.keystore, { account: "fleet", role: "service", name: "ws-sender" });
      const nc = await connectAs(hub.urls, svc.creds ?? "");
      await pollUntil(async () => {
        nc.publish("cmd.plant-a.ws-1.ping", `v${protocolVersion}`);
        await nc.flush();
        return (await Promise.race([got, new Promise<undefined>((r) => setTimeout(() => r(undefined), 200))])) !== undefined;
      }, { what: "the command over WebSocket" });
      expect(await got).toBe(`v${protocolVersion}`);
      await nc.close();
      await c.endAsync();
    }
  });
});

describe("legacy topic mappings and payload normalisers", () => {
  it("maps a legacy topic and normalises its payload (seconds to ms)", async () => {
    const svc = issueUser(hub.keystore, { account: "fleet", role: "ingress", name: "legacy-gw" });
    const seed = svc.seed ?? "";
    const kp = keyPairFromSeed(seed);
    const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${hub.mqtt?.tcp ?? 0}`, { clientId: "legacy-gw", username: "legacy-gw", password: proofPassword(svc.jwt, "legacy-gw", "legacy-gw", (d) => kp.sign(d)), reconnectPeriod: 0 });
    await c.publishAsync("acme/plant-l/temp/sensor-9/reading", JSON.stringify({ data: { v: 21.5 }, t: 1_700_000_000 }), { qos: 1 });
    const stored = await messages("telemetry.plant-l.sensor-9.temp");
    expect(stored).toHaveLength(1);
    expect(JSON.parse(stored[0]?.data ?? "{}")).toEqual({ value: 21.5, ts: 1_700_000_000_000 });
    // a payload that does not fit goes to REJECTED with the reason, and is acknowledged (MQTT 3.1.1)
    await c.publishAsync("acme/plant-l/temp/sensor-9/reading", JSON.stringify({ data: { v: "hot" }, t: 1 }), { qos: 1 });
    const rejected = await messages("rejected.telemetry.plant-l.sensor-9.temp");
    expect(rejected[0]?.reason).toMatch(/no number at data\.v/);
    await c.endAsync();
  });

  it("MQTT 5 gets PUBACK 0x99 for a telemetry payload that is not {value, ts}", async () => {
    const jwt = issueUser(hub.keystore, { account: "fleet", role: "mqtt", name: "bad-payload", site: "plant-a" }).jwt;
    const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${hub.mqtt?.tcp ?? 0}`, { protocolVersion: 5, username: "bad-payload", password: jwt, reconnectPeriod: 0 });
    await expect(c.publishAsync("telemetry/plant-a/bad-payload/temp", "not json", { qos: 1 })).rejects.toThrow(/payload format invalid|153/i);
    const rejected = await messages("rejected.telemetry.plant-a.bad-payload.temp");
    expect(rejected[0]).toEqual({ data: "not json", reason: "telemetry payload is not JSON" });
    await c.endAsync();
  });

  it("refuses an invalid mapping naming the field", () => {
    expect(() => parseInput(ingressOptionsSchema, { mappings: [{ topic: "{a}/x", subject: "telemetry.{b}.x.y" }] }, "ingress config")).toThrow(/ingress config\.mappings\.0\.subject: \{b\} is not a variable of the topic/);
  });
});
