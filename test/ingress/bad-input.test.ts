/**
 * MQTT ingress, bad input on raw sockets: malformed packets, ill-formed UTF-8, a remaining length over four bytes, packets over
 * the maximum size (MQTT 5: DISCONNECT 0x95), a client over the receive maximum (MQTT 5: DISCONNECT 0x93;
 * MQTT 3 is slowed down, nothing lost), protocol violations, a flood of connections that never send CONNECT.
 * After each, the ingress still serves a normal client, a bystander connected all along still gets its
 * messages, and what was stored before is still there.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { MqttClient } from "mqtt";
import type { Socket } from "node:net";
import { connect as netConnect } from "node:net";
import { generate } from "mqtt-packet";
import { pollUntil } from "../../fabric/core/index.js";
import { Harness, startTestHub, type TestHub } from "../harness/index.js";
import { connectMqtt, Inbox, mqttDevice, mqttPort, mqttUrl, RawClient, rawService, serviceUser, streamCount, versionOptions, type ServiceUser, type Version } from "./mqtt-helpers.js";

const MAX_PACKET = 1_024;
const RECEIVE_MAX = 4;
const CONNECT_TIMEOUT_MS = 500;

const h = new Harness();
let hub: TestHub;
let url: string;
let svc: ServiceUser;
let pub: MqttClient;
let bystander: { c: MqttClient; inbox: Inbox };
let checks = 0;
afterAll(() => h.dispose());
beforeAll(async () => {
  hub = await startTestHub(h, { mqtt: true, ingress: { maxPacketSize: MAX_PACKET, connectTimeoutMs: CONNECT_TIMEOUT_MS, receiveMaximum: RECEIVE_MAX } });
  url = mqttUrl(hub);
  svc = serviceUser(hub, "bad-input-svc");
  pub = (await connectMqtt(h, url, { ...versionOptions(5), ...svc.auth("bad-input-pub") })).client;
  const b = await connectMqtt(h, url, { ...versionOptions(4), ...svc.auth("bystander") });
  bystander = { c: b.client, inbox: new Inbox(b.client) };
  await bystander.c.subscribeAsync("events/bystander/#", { qos: 1 });
  // stored before any bad input: must still be there after all of it
  for (let i = 0; i < 3; i++) await pub.publishAsync("events/before/x", `before ${i}`, { qos: 1 });
});

/** The ingress still serves: a new client round trip, the bystander's subscription, the data stored before. */
async function stillServing(): Promise<void> {
  const n = ++checks;
  const { client: c } = await connectMqtt(h, url, { ...versionOptions(5), ...svc.auth(`healthy-${n}`) });
  const inbox = new Inbox(c);
  await c.subscribeAsync(`events/healthy/${n}`, { qos: 1 });
  await pub.publishAsync(`events/healthy/${n}`, "ok", { qos: 1 });
  expect((await inbox.waitTopic(`events/healthy/${n}`))[0]?.payload).toBe("ok");
  await c.endAsync();
  await pub.publishAsync(`events/bystander/${n}`, "still here", { qos: 1 });
  expect((await bystander.inbox.waitTopic(`events/bystander/${n}`))[0]?.payload).toBe("still here");
  expect(bystander.c.connected).toBe(true);
  expect(await streamCount(hub, "EVENTS", "events.before.x")).toBe(3);
}

async function connected(v: Version, clientId: string): Promise<RawClient> {
  return rawService(h, hub, svc, clientId, v);
}

function disconnectReason(raw: RawClient): number | undefined {
  const d = raw.received.find((p) => p.cmd === "disconnect");
  return d?.cmd === "disconnect" ? d.reasonCode : undefined;
}

/** A PUBLISH built by hand: QoS 0, topic given as raw bytes. */
function handPublish(topic: Buffer, payload: Buffer, flags = 0x30): Buffer {
  const body = Buffer.concat([Buffer.from([topic.length >> 8, topic.length & 0xff]), topic, payload]);
  if (body.length > 127) throw new Error("keep hand-built packets short");
  return Buffer.concat([Buffer.from([flags, body.length]), body]);
}

describe("malformed packets", () => {
  it.each([4, 5] as const)("MQTT %s: a PUBLISH with QoS 3 closes the connection (5.0: DISCONNECT 0x81)", async (v) => {
    const raw = await connected(v, `qos3-${v}`);
    raw.sendBytes(handPublish(Buffer.from("events/bad/qos3"), Buffer.from("x"), 0x36));
    await raw.waitClosed(5_000);
    if (v === 5) expect(disconnectReason(raw)).toBe(0x81);
    expect(await streamCount(hub, "EVENTS", "events.bad.qos3")).toBe(0);
    await stillServing();
  });

  it.each([4, 5] as const)("MQTT %s: a SUBSCRIBE with wrong fixed-header flags, and a reserved packet type, close the connection", async (v) => {
    const sub = await connected(v, `badflags-${v}`);
    // SUBSCRIBE must have flags 0010; 0000 is malformed
    sub.sendBytes([0x80, 0x08, 0x00, 0x01, 0x00, 0x03, 0x61, 0x2f, 0x62, 0x01]);
    await sub.waitClosed(5_000);
    expect(sub.received.some((p) => p.cmd === "suback")).toBe(false);
    const reserved = await connected(v, `reserved-${v}`);
    reserved.sendBytes([0x00, 0x00]);
    await reserved.waitClosed(5_000);
    await stillServing();
  });

  it("a CONNECT cut short inside its remaining length (a protocol name of 1 byte, then nothing) is closed at once", async () => {
    const raw = await RawClient.open(h, mqttPort(hub), 4);
    raw.sendBytes([0x10, 0x03, 0x00, 0x01, 0x41]);
    await raw.waitClosed(5_000);
    expect((raw.closedAt ?? 0) - raw.openedAt).toBeLessThan(CONNECT_TIMEOUT_MS);
    expect(raw.received.some((p) => p.cmd === "connack" && p.returnCode === 0)).toBe(false);
    await stillServing();
  });

  it("garbage instead of CONNECT (an HTTP request) is closed, at the latest after the connect timeout, without an answer", async () => {
    const raw = await RawClient.open(h, mqttPort(hub), 4);
    raw.sendBytes(Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    await raw.waitClosed(5_000);
    expect(raw.received).toEqual([]);
    await stillServing();
  });

  it("a first packet that is not CONNECT closes the connection", async () => {
    const raw = await RawClient.open(h, mqttPort(hub), 4);
    raw.send({ cmd: "pingreq" });
    await raw.waitClosed(5_000);
    expect(raw.received.some((p) => p.cmd === "pingresp")).toBe(false);
    await stillServing();
  });

  it.each([4, 5] as const)("MQTT %s: a second CONNECT is a protocol error (5.0: DISCONNECT 0x82)", async (v) => {
    const raw = await connected(v, `second-connect-${v}`);
    raw.send({ cmd: "connect", protocolVersion: v, protocolId: "MQTT", clientId: `second-connect-${v}`, clean: true, keepalive: 0, username: svc.name, password: Buffer.from(svc.password(`second-connect-${v}`)) });
    await raw.waitClosed(5_000);
    if (v === 5) expect(disconnectReason(raw)).toBe(0x82);
    expect(raw.received.filter((p) => p.cmd === "connack")).toHaveLength(1);
    await stillServing();
  });

  it.each([4, 5] as const)("MQTT %s: U+0000 in a topic name closes the connection, nothing is published", async (v) => {
    const raw = await connected(v, `nul-${v}`);
    raw.send({ cmd: "publish", topic: "events/bad/nul\u0000x", payload: Buffer.from("x"), qos: 1, retain: false, dup: false, messageId: 1 });
    await raw.waitClosed(5_000);
    expect(raw.received.some((p) => p.cmd === "puback")).toBe(false);
    await stillServing();
  });
});

function str(b: Buffer): Buffer {
  return Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b]);
}

describe("ill-formed UTF-8", () => {
  it.each([4, 5] as const)("MQTT %s: in a PUBLISH topic closes the connection (5.0: DISCONNECT 0x81), nothing is published", async (v) => {
    const { client: sub } = await connectMqtt(h, url, { ...versionOptions(5), ...svc.auth(`utf8-sub-${v}`) });
    const inbox = new Inbox(sub);
    await sub.subscribeAsync(`utf8/${v}/#`, { qos: 0 });
    const raw = await connected(v, `utf8-pub-${v}`);
    // "utf8/<v>/" then 0xFF 0xFE, which no UTF-8 string holds
    const body = Buffer.concat([str(Buffer.concat([Buffer.from(`utf8/${v}/`), Buffer.from([0xff, 0xfe])])), ...(v === 5 ? [Buffer.from([0x00])] : []), Buffer.from("bad")]);
    raw.sendBytes(Buffer.concat([Buffer.from([0x30, body.length]), body]));
    await raw.waitClosed(5_000);
    if (v === 5) expect(disconnectReason(raw)).toBe(0x81);
    await pub.publishAsync(`utf8/${v}/marker`, "marker", { qos: 0 });
    await inbox.waitTopic(`utf8/${v}/marker`);
    expect(inbox.messages.map((m) => m.payload)).toEqual(["marker"]);
    await stillServing();
  });

  it.each([4, 5] as const)("MQTT %s: in a SUBSCRIBE filter closes the connection, no SUBACK", async (v) => {
    const raw = await connected(v, `utf8-filter-${v}`);
    const body = Buffer.concat([Buffer.from([0x00, 0x01]), ...(v === 5 ? [Buffer.from([0x00])] : []), str(Buffer.from([0x61, 0x2f, 0xff])), Buffer.from([0x00])]);
    raw.sendBytes(Buffer.concat([Buffer.from([0x82, body.length]), body]));
    await raw.waitClosed(5_000);
    expect(raw.received.some((p) => p.cmd === "suback")).toBe(false);
    if (v === 5) expect(disconnectReason(raw)).toBe(0x81);
    await stillServing();
  });

  it("MQTT 3.1.1: in a CONNECT client id is refused", async () => {
    // a bearer device: its password does not depend on the client id
    const d = mqttDevice(hub, "utf8-dev");
    const raw = await RawClient.open(h, mqttPort(hub), 4);
    const body = Buffer.concat([str(Buffer.from("MQTT")), Buffer.from([4, 0xc2, 0x00, 0x00]), str(Buffer.from([0xc3, 0x28])), str(Buffer.from(d.name)), str(Buffer.from(d.jwt))]);
    const len = body.length;
    raw.sendBytes(Buffer.concat([Buffer.from([0x10, (len % 128) | 0x80, Math.floor(len / 128)]), body]));
    await raw.waitClosed(5_000);
    expect(raw.received.some((p) => p.cmd === "connack" && p.returnCode === 0)).toBe(false);
    await stillServing();
  });
});

describe("remaining length", () => {
  it.each([4, 5] as const)("MQTT %s: a remaining length of more than four bytes closes the connection (5.0: DISCONNECT 0x81)", async (v) => {
    const raw = await connected(v, `varint-${v}`);
    raw.sendBytes([0x30, 0xff, 0xff, 0xff, 0xff, 0x01, 0x00]);
    await raw.waitClosed(5_000);
    if (v === 5) expect(disconnectReason(raw)).toBe(0x81);
    await stillServing();
  });

  it("the same before CONNECT", async () => {
    const raw = await RawClient.open(h, mqttPort(hub), 4);
    raw.sendBytes([0x10, 0x80, 0x80, 0x80, 0x80, 0x01]);
    await raw.waitClosed(5_000);
    expect(raw.received.some((p) => p.cmd === "connack" && p.returnCode === 0)).toBe(false);
    await stillServing();
  });

  it("a remaining length that announces 64 MiB is refused from the header, without waiting for the bytes", async () => {
    const raw = await connected(5, "huge-header");
    // 0x80 0x80 0x80 0x20 = 32 × 128³ = 64 MiB; only the header is ever sent
    raw.sendBytes([0x30, 0x80, 0x80, 0x80, 0x20]);
    await raw.waitClosed(5_000);
    expect(disconnectReason(raw)).toBe(0x95);
    await stillServing();
  });
});

describe("maximum packet size", () => {
  it("MQTT 5 CONNACK announces the maximum packet size", async () => {
    const raw = await connected(5, "mps-announce");
    const connack = raw.received.find((p) => p.cmd === "connack");
    expect(connack?.cmd === "connack" ? connack.properties?.maximumPacketSize : undefined).toBe(MAX_PACKET);
  });

  it.each([4, 5] as const)("MQTT %s: a PUBLISH over the maximum closes the connection (5.0: DISCONNECT 0x95), nothing stored", async (v) => {
    const raw = await connected(v, `too-large-${v}`);
    raw.send({ cmd: "publish", topic: "events/bad/large", payload: Buffer.alloc(MAX_PACKET * 2, 0x61), qos: 1, retain: false, dup: false, messageId: 1 });
    await raw.waitClosed(5_000);
    if (v === 5) expect(disconnectReason(raw)).toBe(0x95);
    expect(raw.received.some((p) => p.cmd === "puback")).toBe(false);
    expect(await streamCount(hub, "EVENTS", "events.bad.large")).toBe(0);
    await stillServing();
  });

  it("a PUBLISH just under the maximum is accepted", async () => {
    const raw = await connected(5, "just-fits");
    const topic = "events/bad/fits";
    // fixed header 1 + 2-byte length, topic 2 + n, packet id 2, properties length 1
    const payload = Buffer.alloc(MAX_PACKET - (3 + 2 + topic.length + 2 + 1), 0x62);
    const bytes = generate({ cmd: "publish", topic, payload, qos: 1, retain: false, dup: false, messageId: 9 }, { protocolVersion: 5 });
    expect(bytes.length).toBe(MAX_PACKET);
    raw.sendBytes(bytes);
    expect((await raw.next("puback")).reasonCode ?? 0).toBe(0);
    expect(await streamCount(hub, "EVENTS", "events.bad.fits")).toBe(1);
  });

  it.each([4, 5] as const)("MQTT %s: a topic too long as a NATS subject (dots escape to 3 bytes each) is refused before it reaches NATS, and a filter likewise", async (v) => {
    const topic = `events/long-${v}/${".".repeat(900)}`;
    const raw = await connected(v, `long-topic-${v}`);
    raw.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: `events/${".".repeat(900)}/#`, qos: 1 }] });
    const suback = await raw.next("suback");
    expect(suback.granted).toEqual([v === 5 ? 0x8f : 0x80]);
    raw.send({ cmd: "publish", topic, payload: Buffer.from("x"), qos: 1, retain: false, dup: false, messageId: 2 });
    await raw.waitClosed(5_000);
    if (v === 5) expect(disconnectReason(raw)).toBe(0x90);
    expect(await streamCount(hub, "EVENTS", `events.long-${v}.>`)).toBe(0);
    expect(await streamCount(hub, "EVENTS", "events.before.>")).toBe(3);
    await stillServing();
  });

  it("a CONNECT over the maximum closes the connection", async () => {
    const raw = await RawClient.open(h, mqttPort(hub), 4);
    raw.send({ cmd: "connect", protocolVersion: 4, protocolId: "MQTT", clientId: "big-connect", clean: true, keepalive: 0, username: svc.name, password: Buffer.alloc(MAX_PACKET * 2, 0x63) });
    await raw.waitClosed(5_000);
    expect(raw.received.some((p) => p.cmd === "connack" && p.returnCode === 0)).toBe(false);
    await stillServing();
  });
});

describe("receive maximum", () => {
  it(`MQTT 5: more than ${RECEIVE_MAX} unacknowledged QoS 1 publishes is DISCONNECT 0x93; what was acknowledged is stored`, async () => {
    const raw = await connected(5, "rm-5");
    const connack = raw.received.find((p) => p.cmd === "connack");
    expect(connack?.cmd === "connack" ? connack.properties?.receiveMaximum : undefined).toBe(RECEIVE_MAX);
    // all in one write, so they arrive before any acknowledgement can go out
    const burst = Buffer.concat(
      Array.from({ length: RECEIVE_MAX + 3 }, (_, i) => generate({ cmd: "publish", topic: "events/bad/rm5", payload: Buffer.from(`m${i}`), qos: 1, retain: false, dup: false, messageId: i + 1 }, { protocolVersion: 5 })),
    );
    raw.sendBytes(burst);
    await raw.waitClosed(5_000);
    expect(disconnectReason(raw)).toBe(0x93);
    const acked = raw.received.filter((p) => p.cmd === "puback" && (p.reasonCode ?? 0) === 0).length;
    expect(acked).toBeLessThanOrEqual(RECEIVE_MAX);
    expect(await streamCount(hub, "EVENTS", "events.bad.rm5")).toBeGreaterThanOrEqual(acked);
    await stillServing();
  });

  it("MQTT 3.1.1 (no receive maximum to announce): a burst is slowed down, every publish acknowledged and stored", async () => {
    const raw = await connected(4, "rm-4");
    const n = RECEIVE_MAX * 5;
    const burst = Buffer.concat(
      Array.from({ length: n }, (_, i) => generate({ cmd: "publish", topic: "events/bad/rm4", payload: Buffer.from(`m${i}`), qos: 1, retain: false, dup: false, messageId: i + 1 }, { protocolVersion: 4 })),
    );
    raw.sendBytes(burst);
    await pollUntil(() => raw.received.filter((p) => p.cmd === "puback").length >= n || raw.closed, { what: `${n} PUBACKs` });
    expect(raw.closed).toBe(false);
    // acknowledged in the order sent
    expect(raw.received.filter((p) => p.cmd === "puback").map((p) => p.messageId)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    expect(await streamCount(hub, "EVENTS", "events.bad.rm4")).toBe(n);
  });
});

describe("connections that never send CONNECT", () => {
  it("a flood of 200 is closed after the connect timeout, while normal clients are served", async () => {
    const port = mqttPort(hub);
    const t0 = Date.now();
    const sockets = await Promise.all(
      Array.from(
        { length: 200 },
        () =>
          new Promise<{ socket: Socket; closedAt: () => number | undefined }>((resolve, reject) => {
            let closedAt: number | undefined;
            const s = netConnect({ host: "127.0.0.1", port }, () => resolve({ socket: s, closedAt: () => closedAt }));
            s.on("error", () => undefined);
            s.once("error", reject);
            s.on("close", () => {
              closedAt = Date.now();
            });
            h.defer(() => {
              s.destroy();
            });
          }),
      ),
    );
    // while they hang there, a normal client connects and is served
    await stillServing();
    await pollUntil(() => sockets.every((s) => s.closedAt() !== undefined), { timeoutMs: 10_000, what: "all 200 idle connections to be closed" });
    const times = sockets.map((s) => (s.closedAt() ?? 0) - t0);
    expect(Math.min(...times)).toBeGreaterThanOrEqual(CONNECT_TIMEOUT_MS - 100);
    expect(Math.max(...times)).toBeLessThan(CONNECT_TIMEOUT_MS + 3_000);
    await stillServing();
  });

  it("a client that sends half a CONNECT and stops is closed after the connect timeout too", async () => {
    const raw = await RawClient.open(h, mqttPort(hub), 4);
    const full = generate({ cmd: "connect", protocolVersion: 4, protocolId: "MQTT", clientId: "half", clean: true, keepalive: 0 }, { protocolVersion: 4 });
    raw.sendBytes(full.subarray(0, 6));
    await raw.waitClosed(CONNECT_TIMEOUT_MS + 3_000);
    expect((raw.closedAt ?? 0) - raw.openedAt).toBeGreaterThanOrEqual(CONNECT_TIMEOUT_MS - 100);
    await stillServing();
  });
});
