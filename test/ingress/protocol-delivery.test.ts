/**
 * MQTT ingress, delivery, for MQTT 3.1, 3.1.1 and 5.0: QoS 0/1/2 in both directions (packet flows on raw
 * sockets, delivery at min(published, granted) QoS, exactly-once storage of QoS 2, message ids of reused
 * packet ids and retransmissions, QoS 1 to a topic no stream stores), overlapping subscriptions, `$` topics
 * and wildcards, topic name and filter validation, unsubscribe, persistent sessions (subscriptions, messages
 * queued while away, redelivery of unacknowledged ones), subscriptions in place when SUBACK/CONNACK says so,
 * MQTT 5 session expiry.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { MqttClient } from "mqtt";
import type { NatsConnection } from "@nats-io/transport-node";
import { pollUntil } from "../../fabric/core/index.js";
import { Harness, type TestHub } from "../harness/index.js";
import { connectMqtt, Inbox, mqttTestbed, rawService, type ServiceUser, streamCount, type Version, VERSION_NAME, versionOptions } from "./mqtt-helpers.js";

const h = new Harness();
let hub: TestHub;
let url: string;
let svc: ServiceUser;
let nc: NatsConnection;
/** Publishes through the ingress like any MQTT 5 client. */
let pub: MqttClient;
afterAll(() => h.dispose());
beforeAll(async () => {
  ({ hub, url, svc, nc, pub } = await mqttTestbed(h, "delivery"));
});

async function publish(topic: string, payload: string, qos: 0 | 1 | 2 = 0): Promise<void> {
  await pub.publishAsync(topic, payload, { qos });
}

const VERSIONS = [3, 4, 5] as const;

async function client(v: Version, clientId: string, extra: Parameters<typeof connectMqtt>[2] = {}): Promise<{ c: Awaited<ReturnType<typeof connectMqtt>>["client"]; inbox: Inbox }> {
  const { client: c } = await connectMqtt(h, url, { ...versionOptions(v), ...svc.auth(clientId), ...extra });
  return { c, inbox: new Inbox(c) };
}

describe.each(VERSIONS)("MQTT version level %s", (v) => {
  const tag = `v${v}`;

  it("delivers at min(published QoS, granted QoS), for every combination", async () => {
    const publisher = await client(v, `pubq-${tag}`);
    const subs = [];
    for (const q of [0, 1, 2] as const) {
      const s = await client(v, `pubq-sub-${tag}-${q}`);
      const granted = await s.c.subscribeAsync(`events/qos/${tag}/#`, { qos: q });
      expect(granted[0]?.qos).toBe(q);
      subs.push({ q, ...s });
    }
    for (const pq of [0, 1, 2] as const) {
      await publisher.c.publishAsync(`events/qos/${tag}/p${pq}`, `published at ${pq}`, { qos: pq });
    }
    for (const s of subs) {
      for (const pq of [0, 1, 2] as const) {
        const [m] = await s.inbox.waitTopic(`events/qos/${tag}/p${pq}`);
        expect(m?.payload).toBe(`published at ${pq}`);
        expect(m?.packet.qos, `published ${pq}, granted ${s.q}`).toBe(Math.min(pq, s.q));
      }
    }
  });

  it("QoS 1 from a client is stored before PUBACK", async () => {
    const raw = await rawService(h, hub, svc, `q1-raw-${tag}`, v);
    const subject = `events.q1.${tag}.x`;
    raw.send({ cmd: "publish", topic: `events/q1/${tag}/x`, payload: Buffer.from("stored"), qos: 1, retain: false, dup: false, messageId: 7 });
    const ack = await raw.next("puback");
    expect(ack.messageId).toBe(7);
    if (v === 5) expect(ack.reasonCode ?? 0).toBe(0);
    expect(await streamCount(hub, "EVENTS", subject)).toBe(1);
  });

  it("a packet id reused after its PUBACK, with the same content, is a new message (8 client ids)", async () => {
    // the ingress derives message ids from a hash: several client ids cover both halves of the hash space
    const lost: string[] = [];
    for (let i = 0; i < 8; i++) {
      const cid = `reuse-${tag}-${i}`;
      const raw = await rawService(h, hub, svc, cid, v);
      const publish = { cmd: "publish" as const, topic: `events/reuse/${tag}/${i}`, payload: Buffer.from("same"), qos: 1 as const, retain: false, dup: false, messageId: 7 };
      raw.send(publish);
      await raw.next("puback");
      raw.send(publish);
      await raw.next("puback");
      if ((await streamCount(hub, "EVENTS", `events.reuse.${tag}.${i}`)) !== 2) lost.push(cid);
      raw.end();
    }
    expect(lost).toEqual([]);
  });

  it("a new message (DUP 0) with the packet id and content of the last one before a DISCONNECT is stored too", async () => {
    const cid = `reuse-next-${tag}`;
    const session = v === 5 ? { clean: false, properties: { sessionExpiryInterval: 300 } } : { clean: false };
    // what `mosquitto_pub -c -i door -q 1 -m open` run twice sends: packet id 1 both times
    const publish = { cmd: "publish" as const, topic: `events/reuse-next/${tag}/door`, payload: Buffer.from("open"), qos: 1 as const, retain: false, dup: false, messageId: 1 };
    const first = await rawService(h, hub, svc, cid, v, session);
    first.send(publish);
    await first.next("puback");
    first.send({ cmd: "disconnect" });
    await first.waitClosed();
    const second = await rawService(h, hub, svc, cid, v, session);
    second.send(publish);
    expect((await second.next("puback")).reasonCode ?? 0).toBe(0);
    expect(await streamCount(hub, "EVENTS", `events.reuse-next.${tag}.door`)).toBe(2);
  });

  it("QoS 1 to a topic no stream stores is not delivered, kept in REJECTED, answered at once (5.0: 0x90)", async () => {
    const s = await client(v, `nostream-sub-${tag}`);
    await s.c.subscribeAsync(`nostream/${tag}/#`, { qos: 1 });
    const raw = await rawService(h, hub, svc, `nostream-pub-${tag}`, v);
    const t0 = Date.now();
    raw.send({ cmd: "publish", topic: `nostream/${tag}/x`, payload: Buffer.from("qos 1"), qos: 1, retain: false, dup: false, messageId: 1 });
    const ack = await raw.next("puback", 2_000);
    expect(Date.now() - t0).toBeLessThan(2_000);
    if (v === 5) expect(ack.reasonCode).toBe(0x90);
    expect(raw.closed).toBe(false);
    // QoS 0 needs no stream: it is delivered, after the QoS 1 one would have been
    raw.send({ cmd: "publish", topic: `nostream/${tag}/x`, payload: Buffer.from("qos 0"), qos: 0, retain: false, dup: false });
    await s.inbox.waitFor((m) => m.payload === "qos 0");
    expect(s.inbox.messages.map((m) => m.payload)).toEqual(["qos 0"]);
    expect(await streamCount(hub, "REJECTED", `rejected.nostream.${tag}.x`)).toBe(1);
  });

  it("QoS 1 retransmitted after a reconnect (persistent session, DUP) is stored once", async () => {
    const cid = `q1-retx-${tag}`;
    const persistent = v === 5 ? { clean: false, properties: { sessionExpiryInterval: 60 } } : { clean: false };
    const subject = `events.q1retx.${tag}.x`;
    const publish = { cmd: "publish" as const, topic: `events/q1retx/${tag}/x`, payload: Buffer.from("retried"), qos: 1 as const, retain: false, messageId: 11 };
    const first = await rawService(h, hub, svc, cid, v, persistent);
    first.send({ ...publish, dup: false });
    await first.next("puback");
    // the client did not see that PUBACK (say): it reconnects and sends the message again
    first.end();
    await first.waitClosed();
    const second = await rawService(h, hub, svc, cid, v, persistent);
    expect(second.received.find((p) => p.cmd === "connack")?.sessionPresent).toBe(true);
    second.send({ ...publish, dup: true });
    expect((await second.next("puback")).messageId).toBe(11);
    expect(await streamCount(hub, "EVENTS", subject)).toBe(1);
  });

  it("QoS 2 from a client: PUBREC after storing, PUBREL, PUBCOMP; stored exactly once despite a retransmission", async () => {
    const raw = await rawService(h, hub, svc, `q2-raw-${tag}`, v);
    const watcher = nc.subscribe(`events.q2.${tag}.>`);
    const seen: string[] = [];
    void (async () => {
      for await (const m of watcher) seen.push(m.string());
    })();
    await nc.flush(); // the subscription is in place on the server
    const subject = `events.q2.${tag}.x`;
    const publish = { cmd: "publish" as const, topic: `events/q2/${tag}/x`, payload: Buffer.from("exactly once"), qos: 2 as const, retain: false, messageId: 42 };
    raw.send({ ...publish, dup: false });
    const rec = await raw.next("pubrec");
    expect(rec.messageId).toBe(42);
    if (v === 5) expect(rec.reasonCode ?? 0).toBe(0);
    expect(await streamCount(hub, "EVENTS", subject)).toBe(1);
    // retransmission before PUBREL: acknowledged again, not stored again
    raw.send({ ...publish, dup: true });
    expect((await raw.next("pubrec")).messageId).toBe(42);
    raw.send({ cmd: "pubrel", messageId: 42 });
    expect((await raw.next("pubcomp")).messageId).toBe(42);
    expect(await streamCount(hub, "EVENTS", subject)).toBe(1);
    // a PUBREL retransmitted after PUBCOMP is answered again (MQTT 4.3.3)
    raw.send({ cmd: "pubrel", messageId: 42 });
    expect((await raw.next("pubcomp")).messageId).toBe(42);
    // a marker published after it shows the NATS subscriber everything before it
    raw.send({ cmd: "publish", topic: `events/q2/${tag}/end`, payload: Buffer.from("end"), qos: 1, retain: false, dup: false, messageId: 43 });
    await raw.next("puback");
    await nc.flush();
    await pollUntilSeen(seen, "end");
    expect(seen.filter((s) => s === "exactly once")).toHaveLength(1);
    watcher.unsubscribe();
  });

  it("QoS 2 to a client: PUBLISH, the client's PUBREC, the server's PUBREL, the client's PUBCOMP", async () => {
    const raw = await rawService(h, hub, svc, `q2-out-${tag}`, v);
    raw.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: `events/q2out/${tag}/#`, qos: 2 }] });
    const suback = await raw.next("suback");
    expect(suback.granted).toEqual([2]);
    await publish(`events/q2out/${tag}/a`, "two", 2);
    const p = await raw.next("publish");
    expect(p.qos).toBe(2);
    expect(p.topic).toBe(`events/q2out/${tag}/a`);
    expect(p.payload.toString()).toBe("two");
    const pid = p.messageId ?? 0;
    expect(pid).toBeGreaterThan(0);
    raw.send({ cmd: "pubrec", messageId: pid });
    expect((await raw.next("pubrel")).messageId).toBe(pid);
    raw.send({ cmd: "pubcomp", messageId: pid });
    // the next one uses a packet id again and flows the same way
    await publish(`events/q2out/${tag}/b`, "again", 2);
    const p2 = await raw.next("publish");
    expect(p2.payload.toString()).toBe("again");
    expect(p2.qos).toBe(2);
  });

  it("MQTT.js QoS 2 round trip: publish at 2, a QoS 2 subscriber gets it once", async () => {
    const sub = await client(v, `q2js-sub-${tag}`);
    await sub.c.subscribeAsync(`events/q2js/${tag}/#`, { qos: 2 });
    const pub = await client(v, `q2js-pub-${tag}`);
    await pub.c.publishAsync(`events/q2js/${tag}/a`, "x", { qos: 2 });
    await pub.c.publishAsync(`events/q2js/${tag}/end`, "end", { qos: 2 });
    await sub.inbox.waitTopic(`events/q2js/${tag}/end`);
    expect(sub.inbox.count(`events/q2js/${tag}/a`)).toBe(1);
    expect(sub.inbox.matching((m) => m.topic === `events/q2js/${tag}/a`)[0]?.packet.qos).toBe(2);
    expect(await streamCount(hub, "EVENTS", `events.q2js.${tag}.a`)).toBe(1);
  });

  it("overlapping subscriptions deliver one copy, at the highest granted QoS", async () => {
    const s = await client(v, `overlap-${tag}`);
    const granted = await s.c.subscribeAsync({ [`events/ovl/${tag}/#`]: { qos: 0 }, [`events/ovl/${tag}/+/c`]: { qos: 2 }, [`events/ovl/${tag}/b/c`]: { qos: 1 } });
    expect(granted.map((g) => g.qos).sort()).toEqual([0, 1, 2]);
    await publish(`events/ovl/${tag}/b/c`, "one", 2);
    await publish(`events/ovl/${tag}/b/c`, "two", 2);
    await publish(`events/ovl/${tag}/only-hash`, "three", 2);
    await publish(`events/ovl/${tag}/end/c`, "end", 2);
    // in order on one path at the same QoS (2): once "end" is here, every copy of the others is
    await s.inbox.waitTopic(`events/ovl/${tag}/end/c`);
    const copies = s.inbox.matching((m) => m.topic === `events/ovl/${tag}/b/c`);
    expect(copies.map((m) => m.payload)).toEqual(["one", "two"]);
    expect(copies.map((m) => m.packet.qos)).toEqual([2, 2]);
    const hashOnly = s.inbox.matching((m) => m.topic === `events/ovl/${tag}/only-hash`);
    expect(hashOnly.map((m) => [m.payload, m.packet.qos])).toEqual([["three", 0]]);
  });

  it("`$` topics are not matched by # or +/..., only by a filter that starts with the `$` level", async () => {
    const wild = await client(v, `dollar-wild-${tag}`);
    await wild.c.subscribeAsync({ "#": { qos: 0 }, [`+/dollar-${tag}`]: { qos: 0 }, [`+/dollar-${tag}/#`]: { qos: 0 } });
    const exact = await client(v, `dollar-exact-${tag}`);
    await exact.c.subscribeAsync({ [`$app/#`]: { qos: 0 }, [`$app/+/x`]: { qos: 0 } });
    await publish(`$app/dollar-${tag}`, "dollar");
    await publish(`$app/dollar-${tag}/x`, "dollar-x");
    await publish(`plain/dollar-${tag}`, "plain");
    await exact.inbox.waitTopic(`$app/dollar-${tag}`);
    await exact.inbox.waitTopic(`$app/dollar-${tag}/x`);
    // published after the `$` ones on the same connection: once it is here, they would have been too
    await wild.inbox.waitTopic(`plain/dollar-${tag}`);
    expect(wild.inbox.matching((m) => m.topic.startsWith("$"))).toEqual([]);
    expect(exact.inbox.count(`$app/dollar-${tag}/x`)).toBe(1);
  });

  it("publishing to a topic with a wildcard is a protocol violation: the connection ends, nothing is published", async () => {
    const observer = nc.subscribe(`wild.${tag}.>`);
    const seen: string[] = [];
    void (async () => {
      for await (const m of observer) seen.push(m.subject);
    })();
    await nc.flush();
    for (const topic of [`wild/${tag}/+/x`, `wild/${tag}/#`]) {
      const raw = await rawService(h, hub, svc, `wildpub-${tag}`, v);
      raw.send({ cmd: "publish", topic, payload: Buffer.from("bad"), qos: 1, retain: false, dup: false, messageId: 5 });
      await raw.waitClosed(5_000);
      expect(raw.received.some((p) => p.cmd === "puback"), topic).toBe(false);
      if (v === 5) {
        const d = raw.received.find((p) => p.cmd === "disconnect");
        expect(d?.reasonCode, topic).toBe(0x90);
      }
    }
    // a marker on the same subjects, after: nothing else came
    const ok = await client(v, `wildpub-ok-${tag}`);
    await ok.c.publishAsync(`wild/${tag}/fine`, "fine", { qos: 0 });
    await pollUntilSeen(seen, `wild.${tag}.fine`);
    expect(seen).toEqual([`wild.${tag}.fine`]);
    observer.unsubscribe();
  });

  it("an invalid topic filter is refused in SUBACK (0x80, 5.0: 0x8F) and the connection stays", async () => {
    const raw = await rawService(h, hub, svc, `badfilter-${tag}`, v);
    raw.send({
      cmd: "subscribe",
      messageId: 3,
      subscriptions: [
        { topic: `bf/${tag}/#/x`, qos: 1 },
        { topic: `bf/${tag}/a+`, qos: 1 },
        { topic: `bf/${tag}/ok`, qos: 1 },
      ],
    });
    const suback = await raw.next("suback");
    expect(suback.messageId).toBe(3);
    const refused = v === 5 ? 0x8f : 0x80;
    expect(suback.granted).toEqual([refused, refused, 1]);
    await publish(`bf/${tag}/ok`, "fine");
    const p = await raw.next("publish");
    expect(p.topic).toBe(`bf/${tag}/ok`);
    expect(raw.closed).toBe(false);
  });

  it("UNSUBSCRIBE stops delivery (5.0: UNSUBACK 0x00 and 0x11 for an unknown filter)", async () => {
    const raw = await rawService(h, hub, svc, `unsub-${tag}`, v);
    raw.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: `unsub/${tag}/a`, qos: 0 }, { topic: `unsub/${tag}/b`, qos: 0 }] });
    await raw.next("suback");
    raw.send({ cmd: "unsubscribe", messageId: 2, unsubscriptions: [`unsub/${tag}/a`, `unsub/${tag}/never`] });
    const unsuback = await raw.next("unsuback");
    expect(unsuback.messageId).toBe(2);
    if (v === 5) expect(unsuback.granted).toEqual([0x00, 0x11]);
    await publish(`unsub/${tag}/a`, "gone");
    await publish(`unsub/${tag}/b`, "kept");
    const p = await raw.next("publish");
    // "a" was published first: had it been delivered it would come first
    expect(p.topic).toBe(`unsub/${tag}/b`);
  });

  it("a persistent session (clean 0) is present on reconnect and its subscriptions deliver without resubscribing", async () => {
    const cid = `persist-${tag}`;
    const session = v === 5 ? { clean: false, properties: { sessionExpiryInterval: 300 } } : { clean: false };
    const first = await connectMqtt(h, url, { ...versionOptions(v), ...svc.auth(cid), ...session });
    expect(first.connack.sessionPresent).toBe(false);
    await first.client.subscribeAsync(`events/persist/${tag}/#`, { qos: 1 });
    await first.client.endAsync();
    const again = await connectMqtt(h, url, { ...versionOptions(v), ...svc.auth(cid), ...session });
    expect(again.connack.sessionPresent).toBe(true);
    const inbox = new Inbox(again.client);
    await publish(`events/persist/${tag}/x`, VERSION_NAME[v], 1);
    const [m] = await inbox.waitTopic(`events/persist/${tag}/x`);
    expect(m?.payload).toBe(VERSION_NAME[v]);
    expect(m?.packet.qos).toBe(1);
    await again.client.endAsync();
    // a clean session afterwards starts empty and drops the old one
    const clean = await connectMqtt(h, url, { ...versionOptions(v), ...svc.auth(cid), clean: true });
    expect(clean.connack.sessionPresent).toBe(false);
    await clean.client.endAsync();
    const afterClean = await connectMqtt(h, url, { ...versionOptions(v), ...svc.auth(cid), ...session });
    expect(afterClean.connack.sessionPresent).toBe(false);
  });
});

describe.each([4, 5] as const)("persistent sessions keep messages, MQTT version level %s", (v) => {
  const session = v === 5 ? { clean: false, properties: { sessionExpiryInterval: 300 } } : { clean: false };

  it("QoS 1 messages published while the client was away are delivered when it is back", async () => {
    const cid = `offline-${v}`;
    const first = await connectMqtt(h, url, { ...versionOptions(v), ...svc.auth(cid), ...session });
    await first.client.subscribeAsync(`events/offline/${v}/#`, { qos: 1 });
    await first.client.endAsync();
    await publish(`events/offline/${v}/x`, "while you were away", 1);
    const again = await connectMqtt(h, url, { ...versionOptions(v), ...svc.auth(cid), ...session });
    expect(again.connack.sessionPresent).toBe(true);
    const inbox = new Inbox(again.client);
    await publish(`events/offline/${v}/after`, "after", 1);
    await inbox.waitTopic(`events/offline/${v}/after`);
    expect(inbox.matching((m) => m.topic === `events/offline/${v}/x`).map((m) => m.payload)).toEqual(["while you were away"]);
  });

  it("an unacknowledged QoS 1 delivery is sent again (DUP, same packet id) after a reconnect", async () => {
    const cid = `unacked-${v}`;
    const first = await rawService(h, hub, svc, cid, v, session);
    first.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: `events/unacked/${v}/#`, qos: 1 }] });
    await first.next("suback");
    await publish(`events/unacked/${v}/x`, "ack me", 1);
    const p = await first.next("publish");
    first.end(); // no PUBACK
    await first.waitClosed();
    const again = await rawService(h, hub, svc, cid, v, session);
    const resent = await again.next("publish", 5_000);
    expect(resent.payload.toString()).toBe("ack me");
    expect(resent.messageId).toBe(p.messageId);
    expect(resent.dup).toBe(true);
    again.send({ cmd: "puback", messageId: resent.messageId ?? 0 });
  });

  it("QoS 2 messages queued while away are delivered once, at QoS 2, with the QoS 2 flow", async () => {
    const cid = `offline2-${v}`;
    const first = await connectMqtt(h, url, { ...versionOptions(v), ...svc.auth(cid), ...session });
    await first.client.subscribeAsync(`events/offline2/${v}/#`, { qos: 2 });
    await first.client.endAsync();
    await publish(`events/offline2/${v}/x`, "two", 2);
    await publish(`events/offline2/${v}/y`, "one", 1);
    const again = await rawService(h, hub, svc, cid, v, session);
    const p = await again.next("publish");
    expect([p.topic, p.payload.toString(), p.qos]).toEqual([`events/offline2/${v}/x`, "two", 2]);
    again.send({ cmd: "pubrec", messageId: p.messageId ?? 0 });
    expect((await again.next("pubrel")).messageId).toBe(p.messageId);
    again.send({ cmd: "pubcomp", messageId: p.messageId ?? 0 });
    const q = await again.next("publish");
    expect([q.topic, q.payload.toString(), q.qos]).toEqual([`events/offline2/${v}/y`, "one", 1]);
    again.send({ cmd: "puback", messageId: q.messageId ?? 0 });
  });

  it("an UNSUBSCRIBE in a persistent session stops queueing for that filter only", async () => {
    const cid = `unsub-persist-${v}`;
    const first = await connectMqtt(h, url, { ...versionOptions(v), ...svc.auth(cid), ...session });
    await first.client.subscribeAsync({ [`events/unp/${v}/a`]: { qos: 1 }, [`events/unp/${v}/b`]: { qos: 1 } });
    await first.client.unsubscribeAsync(`events/unp/${v}/a`);
    await first.client.endAsync();
    await publish(`events/unp/${v}/a`, "a", 1);
    await publish(`events/unp/${v}/b`, "b", 1);
    const again = await connectMqtt(h, url, { ...versionOptions(v), ...svc.auth(cid), ...session });
    const inbox = new Inbox(again.client);
    await inbox.waitTopic(`events/unp/${v}/b`);
    // "a" was published (and queued, had it been) before "b"
    expect(inbox.messages.map((m) => m.topic)).toEqual([`events/unp/${v}/b`]);
  });

  it("a clean start discards what was queued for the old session", async () => {
    const cid = `clean-drop-${v}`;
    const first = await connectMqtt(h, url, { ...versionOptions(v), ...svc.auth(cid), ...session });
    await first.client.subscribeAsync(`events/cleandrop/${v}/#`, { qos: 1 });
    await first.client.endAsync();
    await publish(`events/cleandrop/${v}/x`, "queued", 1);
    const clean = await connectMqtt(h, url, { ...versionOptions(v), ...svc.auth(cid), clean: true });
    expect(clean.connack.sessionPresent).toBe(false);
    await clean.client.endAsync();
    const again = await connectMqtt(h, url, { ...versionOptions(v), ...svc.auth(cid), ...session });
    expect(again.connack.sessionPresent).toBe(false);
    const inbox = new Inbox(again.client);
    await again.client.subscribeAsync(`events/cleandrop/${v}/#`, { qos: 1 });
    await publish(`events/cleandrop/${v}/y`, "new", 1);
    await inbox.waitTopic(`events/cleandrop/${v}/y`);
    expect(inbox.messages.map((m) => m.payload)).toEqual(["new"]);
  });
});

describe("subscriptions are in place when acknowledged", () => {
  it.each([4, 5] as const)("MQTT %s: a NATS message published right after SUBACK is delivered (50 rounds)", async (v) => {
    const raw = await rawService(h, hub, svc, `race-suback-${v}`, v);
    const missed: number[] = [];
    for (let i = 0; i < 50; i++) {
      raw.send({ cmd: "subscribe", messageId: i + 1, subscriptions: [{ topic: `race/${v}/${i}`, qos: 0 }] });
      await raw.next("suback");
      nc.publish(`race.${v}.${i}`, String(i));
      // bounded wait per round: a delivery takes a few ms; a lost one never comes
      const p = await raw.next("publish", 1_000).catch(() => undefined);
      if (p === undefined) missed.push(i);
    }
    expect(missed).toEqual([]);
  });

  it("a NATS message published right after the CONNACK of a resumed session is delivered (30 rounds)", async () => {
    const missed: number[] = [];
    for (let i = 0; i < 30; i++) {
      const cid = `race-resume-${i}`;
      const first = await rawService(h, hub, svc, cid, 4, { clean: false });
      first.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: `resume/${i}`, qos: 0 }] });
      await first.next("suback");
      first.send({ cmd: "disconnect" });
      await first.waitClosed();
      const again = await rawService(h, hub, svc, cid, 4, { clean: false });
      expect(again.received.find((p) => p.cmd === "connack")?.sessionPresent).toBe(true);
      nc.publish(`resume.${i}`, String(i));
      const p = await again.next("publish", 1_000).catch(() => undefined);
      if (p === undefined) missed.push(i);
      again.end();
    }
    expect(missed).toEqual([]);
  });
});

describe("MQTT 5 session expiry", () => {
  it("a session with expiry 0 (the default) ends with the connection", async () => {
    const first = await connectMqtt(h, url, { ...versionOptions(5), ...svc.auth("expiry0"), clean: false });
    await first.client.subscribeAsync("expiry0/#", { qos: 1 });
    await first.client.endAsync();
    const again = await connectMqtt(h, url, { ...versionOptions(5), ...svc.auth("expiry0"), clean: false });
    expect(again.connack.sessionPresent).toBe(false);
  });

  it("a session expiry set on DISCONNECT is honoured", async () => {
    const raw = await rawService(h, hub, svc, "expiry-on-disconnect", 5, { clean: false, properties: { sessionExpiryInterval: 60 } });
    raw.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "eod/#", qos: 1 }] });
    await raw.next("suback");
    // shorten it to 0 when leaving: the session must be gone
    raw.send({ cmd: "disconnect", reasonCode: 0, properties: { sessionExpiryInterval: 0 } });
    await raw.waitClosed(5_000);
    const again = await connectMqtt(h, url, { ...versionOptions(5), ...svc.auth("expiry-on-disconnect"), clean: false, properties: { sessionExpiryInterval: 60 } });
    expect(again.connack.sessionPresent).toBe(false);
  });

  it("setting a session expiry on DISCONNECT when it was 0 is a protocol error (0x82)", async () => {
    const raw = await rawService(h, hub, svc, "expiry-bad-disconnect", 5, { clean: true });
    raw.send({ cmd: "disconnect", reasonCode: 0, properties: { sessionExpiryInterval: 60 } });
    await raw.waitClosed(5_000);
    const d = raw.received.find((p) => p.cmd === "disconnect");
    expect(d?.reasonCode).toBe(0x82);
  });
});

async function pollUntilSeen(seen: string[], what: string): Promise<void> {
  await pollUntil(() => seen.includes(what), { timeoutMs: 10_000, what: `${what} among ${JSON.stringify(seen)}` });
}
