/**
 * MQTT ingress, MQTT 5 features: user properties (also seen by NATS subscribers as headers), content type,
 * payload format indicator, message expiry, topic aliases both ways, subscription identifiers, no-local,
 * retain-as-published, shared subscriptions, request/response, the client's receive maximum and maximum
 * packet size; and payload validation of telemetry (REJECTED) for 3.1.1 and 5.0.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { MqttClient } from "mqtt";
import { headers as natsHeaders, type Msg, type NatsConnection } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { pollUntil } from "../../fabric/core/index.js";
import { Harness, type TestHub } from "../harness/index.js";
import { connectMqtt, Inbox, mqttDevice, mqttTestbed, rawService, reading, type ServiceUser, streamCount, versionOptions } from "./mqtt-helpers.js";

const h = new Harness();
let hub: TestHub;
let url: string;
let svc: ServiceUser;
let nc: NatsConnection;
/** Publishes through the ingress like any MQTT 5 client. */
let pub: MqttClient;
afterAll(() => h.dispose());
beforeAll(async () => {
  ({ hub, url, svc, nc, pub } = await mqttTestbed(h, "v5"));
});

async function client(clientId: string, extra: Parameters<typeof connectMqtt>[2] = {}): Promise<{ c: MqttClient; inbox: Inbox }> {
  const { client: c } = await connectMqtt(h, url, { ...versionOptions(5), ...svc.auth(clientId), ...extra });
  return { c, inbox: new Inbox(c) };
}

/** A NATS subscription whose messages are collected; in place on the server when this resolves. */
async function natsCollect(subject: string): Promise<Msg[]> {
  const got: Msg[] = [];
  const sub = nc.subscribe(subject, {
    callback: (err, m) => {
      if (err === null) got.push(m);
    },
  });
  h.defer(() => sub.unsubscribe());
  await nc.flush();
  return got;
}

describe("MQTT 5 properties", () => {
  it("user properties reach MQTT 5 subscribers as they were sent, and NATS subscribers as headers", async () => {
    const s = await client("up-sub");
    await s.c.subscribeAsync("events/up/#", { qos: 1 });
    const v311 = await connectMqtt(h, url, { ...versionOptions(4), ...svc.auth("up-sub-311") });
    const v311Inbox = new Inbox(v311.client);
    await v311.client.subscribeAsync("events/up/#", { qos: 1 });
    const natsGot = await natsCollect("events.up.>");
    const userProperties = { site: "plant-a", multi: ["1", "2"], "with space": "a b", "Fabric-Looks-Reserved": "kept", ünï: "çødé" };
    await pub.publishAsync("events/up/x", "props", { qos: 1, properties: { userProperties } });
    const [m] = await s.inbox.waitTopic("events/up/x");
    expect(m?.payload).toBe("props");
    expect(m?.packet.properties?.userProperties).toEqual(userProperties);
    // an MQTT 3.1.1 subscriber gets the message, without properties
    expect((await v311Inbox.waitTopic("events/up/x"))[0]?.payload).toBe("props");
    await pollUntil(() => natsGot.length > 0, { what: "the NATS copy" });
    const hdrs = natsGot[0]?.headers;
    expect(hdrs?.get("site")).toBe("plant-a");
    expect(hdrs?.values("multi")).toEqual(["1", "2"]);
  });

  it("content type and payload format indicator are delivered (Content-Type is a NATS header too)", async () => {
    const s = await client("ct-sub");
    await s.c.subscribeAsync("ct/#", { qos: 0 });
    const natsGot = await natsCollect("ct.>");
    await pub.publishAsync("ct/x", '{"a":1}', { qos: 0, properties: { contentType: "application/json", payloadFormatIndicator: true } });
    const [m] = await s.inbox.waitTopic("ct/x");
    expect(m?.packet.properties?.contentType).toBe("application/json");
    expect(m?.packet.properties?.payloadFormatIndicator).toBe(true);
    await pollUntil(() => natsGot.length > 0, { what: "the NATS copy" });
    expect(natsGot[0]?.headers?.get("Content-Type")).toBe("application/json");
  });

  it("a payload that is not UTF-8 though its format indicator says so is refused (PUBACK 0x99) and not delivered", async () => {
    const s = await client("pfi-sub");
    await s.c.subscribeAsync("events/pfi/#", { qos: 1 });
    const raw = await rawService(h, hub, svc, "pfi-raw", 5);
    raw.send({ cmd: "publish", topic: "events/pfi/bad", payload: Buffer.from([0xff, 0xfe, 0x80]), qos: 1, retain: false, dup: false, messageId: 3, properties: { payloadFormatIndicator: true } });
    const ack = await raw.next("puback");
    expect(ack.reasonCode).toBe(0x99);
    // not binary-flagged: the same bytes go through
    raw.send({ cmd: "publish", topic: "events/pfi/binary", payload: Buffer.from([0xff, 0xfe, 0x80]), qos: 1, retain: false, dup: false, messageId: 4 });
    expect((await raw.next("puback")).reasonCode ?? 0).toBe(0);
    await s.inbox.waitTopic("events/pfi/binary");
    expect(s.inbox.count("events/pfi/bad")).toBe(0);
    expect(await streamCount(hub, "EVENTS", "events.pfi.bad")).toBe(0);
    expect(raw.closed).toBe(false);
  });

  it("message expiry is passed on, counted down", async () => {
    const s = await client("exp-sub");
    await s.c.subscribeAsync("exp/#", { qos: 1 });
    await pub.publishAsync("exp/x", "expiring", { qos: 0, properties: { messageExpiryInterval: 60 } });
    await pub.publishAsync("exp/y", "forever", { qos: 0 });
    const [m] = await s.inbox.waitTopic("exp/x");
    const left = m?.packet.properties?.messageExpiryInterval ?? 0;
    expect(left).toBeGreaterThan(0);
    expect(left).toBeLessThanOrEqual(60);
    expect((await s.inbox.waitTopic("exp/y"))[0]?.packet.properties?.messageExpiryInterval).toBeUndefined();
  });

  it("request/response: response topic and correlation data reach the responder, and the response comes back", async () => {
    const requester = await client("rr-requester");
    await requester.c.subscribeAsync("events/rr/responses/requester", { qos: 1 });
    const responder = await client("rr-responder");
    const responseErrors: Error[] = [];
    await responder.c.subscribeAsync("events/rr/requests/#", { qos: 1 });
    responder.c.on("message", (_topic, payload, packet) => {
      const p = packet.properties;
      if (p?.responseTopic === undefined) return;
      responder.c.publish(p.responseTopic, `re: ${payload.toString()}`, { qos: 1, properties: { ...(p.correlationData === undefined ? {} : { correlationData: p.correlationData }) } }, (err) => {
        if (err instanceof Error) responseErrors.push(err);
      });
    });
    const correlationData = Buffer.from([0, 1, 2, 0xff]);
    await requester.c.publishAsync("events/rr/requests/time", "what time is it", { qos: 1, properties: { responseTopic: "events/rr/responses/requester", correlationData } });
    const [req] = await responder.inbox.waitTopic("events/rr/requests/time");
    expect(req?.packet.properties?.responseTopic).toBe("events/rr/responses/requester");
    expect(Buffer.from(req?.packet.properties?.correlationData ?? [])).toEqual(correlationData);
    const [res] = await requester.inbox.waitTopic("events/rr/responses/requester");
    expect(res?.payload).toBe("re: what time is it");
    expect(Buffer.from(res?.packet.properties?.correlationData ?? [])).toEqual(correlationData);
    expect(responseErrors).toEqual([]);
  });
});

/**
 * Makes a NATS client act once an MQTT client says it is ready (it publishes a "ready" message through the
 * ingress), the way a service answers a device.
 */
async function whenReady(subject: string, act: () => Promise<void> | void): Promise<{ acted: Promise<void> }> {
  let resolve: () => void = () => undefined;
  let reject: (err: unknown) => void = () => undefined;
  const done = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  const sub = nc.subscribe(subject, {
    max: 1,
    callback: (err) => {
      if (err !== null) return reject(err);
      Promise.resolve(act()).then(resolve, reject);
    },
  });
  h.defer(() => sub.unsubscribe());
  await nc.flush();
  return { acted: done };
}

describe("MQTT 5 deliveries of NATS messages", () => {
  it("NATS headers arrive as user properties; the Fabric-Mqtt-* ones are not exposed", async () => {
    const s = await client("natshdr-sub");
    const { acted } = await whenReady("events.natshdr.ready", () => {
      const hdrs = natsHeaders();
      hdrs.append("X-Trace", "abc");
      hdrs.append("multi", "1");
      hdrs.append("multi", "2");
      hdrs.set("Content-Type", "text/csv");
      nc.publish("natshdr.x", "from nats", { headers: hdrs });
    });
    await s.c.subscribeAsync("natshdr/#", { qos: 0 });
    await s.c.publishAsync("events/natshdr/ready", "ready", { qos: 1 });
    await acted;
    const [m] = await s.inbox.waitTopic("natshdr/x");
    expect(m?.payload).toBe("from nats");
    const up = m?.packet.properties?.userProperties ?? {};
    expect(up["X-Trace"]).toBe("abc");
    expect(up["multi"]).toEqual(["1", "2"]);
    expect(m?.packet.properties?.contentType).toBe("text/csv");
    expect(Object.keys(up).filter((k) => /^fabric-/i.test(k))).toEqual([]);
  });

  it("a NATS request reaches an mqtt device with a response topic; the device's response gets back (and only there)", async () => {
    const name = "responder-dev";
    const d = mqttDevice(hub, name);
    const { client: dev } = await connectMqtt(h, url, { ...versionOptions(5), clientId: name, username: name, password: d.jwt });
    const responses: string[] = [];
    dev.on("message", (_topic, payload, packet) => {
      const rt = packet.properties?.responseTopic;
      if (rt === undefined) return;
      dev.publish(rt, `status: ${payload.toString()}`, { qos: 0, properties: packet.properties?.correlationData === undefined ? {} : { correlationData: packet.properties.correlationData } });
      responses.push(rt);
    });
    const inbox = `_INBOX.requester.${Date.now()}`;
    const replies: string[] = [];
    const replySub = nc.subscribe(inbox, {
      callback: (err, m) => {
        if (err === null) replies.push(m.string());
      },
    });
    h.defer(() => replySub.unsubscribe());
    const { acted } = await whenReady(`events.plant-a.${name}.ready`, () => nc.publish(`cmd.plant-a.${name}.status`, "ok?", { reply: inbox }));
    await dev.subscribeAsync(`cmd/plant-a/${name}/#`, { qos: 0 });
    await dev.publishAsync(`events/plant-a/${name}/ready`, "ready", { qos: 1 });
    await acted;
    // the COMMANDS stream acknowledges the command too; the device's answer is among the replies
    await pollUntil(() => replies.includes("status: ok?"), { what: "the device's response" });
    expect(responses).toEqual([inbox.replaceAll(".", "/")]);
    // the grant was for one response: the device may not publish to that inbox again
    await expect(dev.publishAsync(inbox.replaceAll(".", "/"), "again", { qos: 1 })).rejects.toThrow(/135|not authori[sz]ed/i);
  });
});

describe("MQTT 5 topic aliases", () => {
  it("from the client: an alias set with a topic, then used with an empty topic", async () => {
    const s = await client("alias-in-sub");
    await s.c.subscribeAsync("events/alias/#", { qos: 1 });
    const raw = await rawService(h, hub, svc, "alias-in", 5);
    const connack = raw.received.find((p) => p.cmd === "connack");
    expect(connack?.properties?.topicAliasMaximum ?? 0).toBeGreaterThanOrEqual(1);
    raw.send({ cmd: "publish", topic: "events/alias/x", payload: Buffer.from("first"), qos: 1, retain: false, dup: false, messageId: 1, properties: { topicAlias: 1 } });
    expect((await raw.next("puback")).reasonCode ?? 0).toBe(0);
    raw.send({ cmd: "publish", topic: "", payload: Buffer.from("second"), qos: 1, retain: false, dup: false, messageId: 2, properties: { topicAlias: 1 } });
    expect((await raw.next("puback")).reasonCode ?? 0).toBe(0);
    // re-map the alias to another topic
    raw.send({ cmd: "publish", topic: "events/alias/y", payload: Buffer.from("third"), qos: 1, retain: false, dup: false, messageId: 3, properties: { topicAlias: 1 } });
    await raw.next("puback");
    raw.send({ cmd: "publish", topic: "", payload: Buffer.from("fourth"), qos: 1, retain: false, dup: false, messageId: 4, properties: { topicAlias: 1 } });
    await raw.next("puback");
    await s.inbox.waitTopic("events/alias/y", 2);
    expect(s.inbox.matching((m) => m.topic === "events/alias/x").map((m) => m.payload)).toEqual(["first", "second"]);
    expect(s.inbox.matching((m) => m.topic === "events/alias/y").map((m) => m.payload)).toEqual(["third", "fourth"]);
    expect(await streamCount(hub, "EVENTS", "events.alias.x")).toBe(2);
  });

  it("an alias never set is a protocol error (0x82); alias 0 or above the maximum is invalid (0x94)", async () => {
    const unknown = await rawService(h, hub, svc, "alias-unknown", 5);
    unknown.send({ cmd: "publish", topic: "", payload: Buffer.from("x"), qos: 0, retain: false, dup: false, properties: { topicAlias: 3 } });
    await unknown.waitClosed(5_000);
    expect(unknown.received.find((p) => p.cmd === "disconnect")?.reasonCode).toBe(0x82);
    const tooBig = await rawService(h, hub, svc, "alias-too-big", 5);
    const max = tooBig.received.find((p) => p.cmd === "connack")?.properties?.topicAliasMaximum ?? 0;
    tooBig.send({ cmd: "publish", topic: "a/b", payload: Buffer.from("x"), qos: 0, retain: false, dup: false, properties: { topicAlias: max + 1 } });
    await tooBig.waitClosed(5_000);
    expect(tooBig.received.find((p) => p.cmd === "disconnect")?.reasonCode).toBe(0x94);
  });

  it("to the client: the first delivery on a topic carries topic and alias, later ones the alias only", async () => {
    const raw = await rawService(h, hub, svc, "alias-out", 5, { properties: { topicAliasMaximum: 4 } });
    raw.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "aliasout/#", qos: 0 }] });
    await raw.next("suback");
    await pub.publishAsync("aliasout/long/topic/name", "1", { qos: 0 });
    await pub.publishAsync("aliasout/long/topic/name", "2", { qos: 0 });
    const first = await raw.next("publish");
    const second = await raw.next("publish");
    expect(first.topic).toBe("aliasout/long/topic/name");
    const alias = first.properties?.topicAlias;
    expect(alias).toBeGreaterThanOrEqual(1);
    expect(alias).toBeLessThanOrEqual(4);
    expect(second.topic).toBe("");
    expect(second.properties?.topicAlias).toBe(alias);
    expect(second.payload.toString()).toBe("2");
  });

  it("to a client that allows no aliases: always the full topic", async () => {
    const raw = await rawService(h, hub, svc, "alias-out-none", 5);
    raw.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "aliasnone/#", qos: 0 }] });
    await raw.next("suback");
    await pub.publishAsync("aliasnone/t", "1", { qos: 0 });
    await pub.publishAsync("aliasnone/t", "2", { qos: 0 });
    for (const p of [await raw.next("publish"), await raw.next("publish")]) {
      expect(p.topic).toBe("aliasnone/t");
      expect(p.properties?.topicAlias).toBeUndefined();
    }
  });
});

describe("MQTT 5 subscription options", () => {
  it("subscription identifiers are delivered, all of them for overlapping subscriptions", async () => {
    const s = await client("sid-sub");
    await s.c.subscribeAsync("events/sid/a/#", { qos: 1, properties: { subscriptionIdentifier: 7 } });
    await s.c.subscribeAsync("events/sid/+/b", { qos: 1, properties: { subscriptionIdentifier: 9 } });
    await s.c.subscribeAsync("events/sid/plain", { qos: 1 });
    await pub.publishAsync("events/sid/a/c", "seven", { qos: 1 });
    await pub.publishAsync("events/sid/a/b", "both", { qos: 1 });
    await pub.publishAsync("events/sid/plain", "none", { qos: 1 });
    await s.inbox.waitTopic("events/sid/plain");
    expect(s.inbox.matching((m) => m.topic === "events/sid/a/c").map((m) => m.packet.properties?.subscriptionIdentifier)).toEqual([7]);
    const both = s.inbox.matching((m) => m.topic === "events/sid/a/b");
    expect(both).toHaveLength(1);
    const ids = both[0]?.packet.properties?.subscriptionIdentifier;
    expect((Array.isArray(ids) ? [...ids] : [ids]).sort()).toEqual([7, 9]);
    expect(s.inbox.matching((m) => m.topic === "events/sid/plain")[0]?.packet.properties?.subscriptionIdentifier).toBeUndefined();
  });

  it("no-local: a client does not get its own publishes; others still do", async () => {
    const self = await client("nl-self");
    await self.c.subscribeAsync("events/nl/#", { qos: 1, nl: true });
    const other = await client("nl-other");
    await other.c.subscribeAsync("events/nl/#", { qos: 1 });
    await self.c.publishAsync("events/nl/x", "mine", { qos: 1 });
    await pub.publishAsync("events/nl/x", "theirs", { qos: 1 });
    // "theirs" was published after "mine" (PUBACK first): once it is here, "mine" would have been too
    await self.inbox.waitFor((m) => m.payload === "theirs");
    expect(self.inbox.messages.map((m) => m.payload)).toEqual(["theirs"]);
    await other.inbox.waitFor((m) => m.payload === "theirs");
    expect(other.inbox.messages.map((m) => m.payload)).toEqual(["mine", "theirs"]);
  });

  it("retain-as-published keeps the retain flag on live deliveries; without it the flag is cleared", async () => {
    const rap = await client("rap-on");
    await rap.c.subscribeAsync("events/rap/#", { qos: 1, rap: true });
    const plain = await client("rap-off");
    await plain.c.subscribeAsync("events/rap/#", { qos: 1, rap: false });
    await pub.publishAsync("events/rap/x", "retained", { qos: 1, retain: true });
    await pub.publishAsync("events/rap/y", "not retained", { qos: 1 });
    await rap.inbox.waitTopic("events/rap/y");
    await plain.inbox.waitTopic("events/rap/y");
    expect(rap.inbox.matching((m) => m.topic === "events/rap/x").map((m) => m.packet.retain)).toEqual([true]);
    expect(plain.inbox.matching((m) => m.topic === "events/rap/x").map((m) => m.packet.retain)).toEqual([false]);
    expect(rap.inbox.matching((m) => m.topic === "events/rap/y").map((m) => m.packet.retain)).toEqual([false]);
    await pub.publishAsync("events/rap/x", "", { qos: 1, retain: true });
  });

  it("shared subscriptions: each message goes to exactly one member of the group", async () => {
    const members = [await client("share-a"), await client("share-b")];
    for (const [i, m] of members.entries()) {
      await m.c.subscribeAsync("$share/g1/events/shared/#", { qos: 1 });
      await m.c.subscribeAsync(`events/shared-end/${i}`, { qos: 1 });
    }
    const watcher = await client("share-watcher");
    await watcher.c.subscribeAsync("events/shared/#", { qos: 1 });
    const n = 40;
    for (let i = 0; i < n; i++) await pub.publishAsync(`events/shared/${i}`, String(i), { qos: 1 });
    // published after all of them: once each member has its marker, it has all its share
    for (const [i] of members.entries()) await pub.publishAsync(`events/shared-end/${i}`, "end", { qos: 1 });
    for (const [i, m] of members.entries()) await m.inbox.waitTopic(`events/shared-end/${i}`);
    const got = members.map((m) => m.inbox.matching((x) => x.topic.startsWith("events/shared/")).map((x) => x.payload));
    const all = [...(got[0] ?? []), ...(got[1] ?? [])].map(Number).sort((a, b) => a - b);
    expect(all).toEqual([...Array(n).keys()]);
    // 40 messages at random: both members get some (the odds of one getting none are 2^-39)
    expect(got[0]?.length).toBeGreaterThan(0);
    expect(got[1]?.length).toBeGreaterThan(0);
    // a non-shared subscriber gets every one
    await watcher.inbox.waitFor((m) => m.topic.startsWith("events/shared/"), n);
  });

  it("shared subscriptions: no-local on one is a protocol error (0x82)", async () => {
    const raw = await rawService(h, hub, svc, "share-nl", 5);
    raw.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "$share/g2/x/#", qos: 1, nl: true }] });
    await raw.waitClosed(5_000);
    expect(raw.received.find((p) => p.cmd === "disconnect")?.reasonCode).toBe(0x82);
  });
});

describe("MQTT 5 persistent sessions", () => {
  const session = { clean: false, properties: { sessionExpiryInterval: 300 } };

  it("keep subscription options: identifier, retain-as-published, no-local", async () => {
    const first = await connectMqtt(h, url, { ...versionOptions(5), ...svc.auth("opts-persist"), ...session });
    await first.client.subscribeAsync("events/optsp/#", { qos: 1, rap: true, nl: true, properties: { subscriptionIdentifier: 5 } });
    await first.client.publishAsync("events/optsp/own", "mine", { qos: 1 });
    await first.client.endAsync();
    await pub.publishAsync("events/optsp/x", "retained", { qos: 1, retain: true, properties: { userProperties: { k: "v" } } });
    const again = await connectMqtt(h, url, { ...versionOptions(5), ...svc.auth("opts-persist"), ...session });
    const inbox = new Inbox(again.client);
    await again.client.publishAsync("events/optsp/own", "mine again", { qos: 1 });
    await pub.publishAsync("events/optsp/end", "end", { qos: 1 });
    await inbox.waitTopic("events/optsp/end");
    expect(inbox.messages.map((m) => m.topic)).toEqual(["events/optsp/x", "events/optsp/end"]);
    const [m] = inbox.messages;
    expect(m?.packet.retain).toBe(true);
    expect(m?.packet.properties?.subscriptionIdentifier).toBe(5);
    expect(m?.packet.properties?.userProperties).toEqual({ k: "v" });
    await pub.publishAsync("events/optsp/x", "", { qos: 1, retain: true });
  });

  it("shared subscriptions of persistent sessions still share: each message to one member", async () => {
    const members: { id: string; inbox: Inbox }[] = [];
    for (const id of ["share-p-a", "share-p-b"]) {
      const { client: c } = await connectMqtt(h, url, { ...versionOptions(5), ...svc.auth(id), ...session });
      await c.subscribeAsync("$share/gp/events/sharep/#", { qos: 1 });
      await c.subscribeAsync(`events/sharep-end/${id}`, { qos: 1 });
      members.push({ id, inbox: new Inbox(c) });
    }
    const n = 20;
    for (let i = 0; i < n; i++) await pub.publishAsync(`events/sharep/${i}`, String(i), { qos: 1 });
    for (const m of members) await pub.publishAsync(`events/sharep-end/${m.id}`, "end", { qos: 1 });
    for (const m of members) await m.inbox.waitTopic(`events/sharep-end/${m.id}`);
    // the markers ride other subscriptions: give the shared deliveries the same bounded time to land
    await pollUntil(() => members.reduce((k, m) => k + m.inbox.matching((x) => x.topic.startsWith("events/sharep/")).length, 0) >= n, { timeoutMs: 5_000, what: `${n} shared deliveries` });
    const all = members.flatMap((m) => m.inbox.matching((x) => x.topic.startsWith("events/sharep/")).map((x) => Number(x.payload))).sort((a, b) => a - b);
    expect(all).toEqual([...Array(n).keys()]);
  });
});

describe("MQTT 5 client limits", () => {
  it("the client's receive maximum: no more QoS 1 publishes in flight than it allows", async () => {
    const raw = await rawService(h, hub, svc, "client-rm", 5, { properties: { receiveMaximum: 2 } });
    raw.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "events/crm/#", qos: 1 }, { topic: "crm-marker", qos: 0 }] });
    await raw.next("suback");
    for (let i = 0; i < 5; i++) await pub.publishAsync(`events/crm/${i}`, String(i), { qos: 1 });
    await pub.publishAsync("crm-marker", "after", { qos: 0 });
    // QoS 0 is not counted: once the marker is here, everything sendable before it was sent
    const inflight = [];
    for (;;) {
      const p = await raw.next("publish");
      if (p.topic === "crm-marker") break;
      inflight.push(p);
    }
    expect(inflight.map((p) => p.payload.toString())).toEqual(["0", "1"]);
    raw.send({ cmd: "puback", messageId: inflight[0]?.messageId ?? 0, reasonCode: 0 });
    const third = await raw.next("publish");
    expect(third.payload.toString()).toBe("2");
  });

  it("the client's maximum packet size: larger messages are not sent to it, smaller ones are", async () => {
    const raw = await rawService(h, hub, svc, "client-mps", 5, { properties: { maximumPacketSize: 200 } });
    raw.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "mps/#", qos: 0 }] });
    await raw.next("suback");
    await pub.publishAsync("mps/big", "x".repeat(1_000), { qos: 0 });
    await pub.publishAsync("mps/small", "y", { qos: 0 });
    const p = await raw.next("publish");
    expect(p.topic).toBe("mps/small");
    expect(raw.closed).toBe(false);
  });
});

describe("telemetry validation", () => {
  it.each([4, 5] as const)("MQTT %s: a telemetry payload that breaks the contract goes to REJECTED with its reason", async (v) => {
    const name = `badtel-${v}`;
    const d = mqttDevice(hub, name);
    const { client: c } = await connectMqtt(h, url, { ...versionOptions(v), clientId: name, username: name, password: d.jwt });
    const topic = `telemetry/plant-a/${name}/temp`;
    if (v === 5) {
      await expect(c.publishAsync(topic, "not json", { qos: 1 })).rejects.toThrow(/153|payload format/i);
    } else {
      // MQTT 3 has no negative PUBACK: acknowledged (kept in REJECTED)
      await c.publishAsync(topic, "not json", { qos: 1 });
    }
    await c.publishAsync(topic, reading(21.5), { qos: 1 });
    expect(await streamCount(hub, "TELEMETRY", `telemetry.plant-a.${name}.temp`)).toBe(1);
    const rejected = `rejected.telemetry.plant-a.${name}.temp`;
    expect(await streamCount(hub, "REJECTED", rejected)).toBe(1);
    const jsm = await jetstreamManager(nc);
    const m = await jsm.streams.getMessage("REJECTED", { last_by_subj: rejected });
    expect(m?.string()).toBe("not json");
    expect(m?.header.get("Fabric-Reject-Reason")).toMatch(/json/i);
  });
});
