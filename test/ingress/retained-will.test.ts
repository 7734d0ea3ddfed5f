/**
 * MQTT ingress, retained messages and wills, for MQTT 3.1, 3.1.1 and 5.0: a new subscriber gets the retained
 * message with the retain flag, at min(QoS); an empty payload clears it; retain handling 0/1/2; expiry;
 * none for shared subscriptions. Wills: published when the connection drops without DISCONNECT (also with
 * DISCONNECT 0x04), not after a normal DISCONNECT, after the will delay, not when the client comes back within
 * it, on a takeover (MQTT 5: unless clean start 0 within the will delay), within the device's permissions,
 * stored at QoS 1, retained when asked.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { MqttClient } from "mqtt";
import type { IConnectPacket } from "mqtt-packet";
import { pollUntil } from "../../fabric/core/index.js";
import { Harness, type TestHub } from "../harness/index.js";
import { connectMqtt, Inbox, mqttDevice, mqttPort, mqttTestbed, RawClient, rawService, type ServiceUser, streamCount, type Version, versionOptions } from "./mqtt-helpers.js";

const h = new Harness();
let hub: TestHub;
let url: string;
let svc: ServiceUser;
/** Publishes through the ingress like any MQTT 5 client. */
let pub: MqttClient;
afterAll(() => h.dispose());
beforeAll(async () => {
  ({ hub, url, svc, pub } = await mqttTestbed(h, "rw"));
});

const VERSIONS = [3, 4, 5] as const;

async function client(v: Version, clientId: string, extra: Parameters<typeof connectMqtt>[2] = {}): Promise<{ c: MqttClient; inbox: Inbox }> {
  const { client: c } = await connectMqtt(h, url, { ...versionOptions(v), ...svc.auth(clientId), ...extra });
  return { c, inbox: new Inbox(c) };
}

/**
 * Subscribes a fresh raw client to `filter` and returns what it got once `marker` (a retained topic the
 * filter matches) is in, and a PINGREQ round trip after it: everything sent for the subscription by then.
 */
async function retainedSeenBy(v: Version, clientId: string, filter: string, marker: string, options: { qos?: 0 | 1 | 2; rh?: number } = {}): Promise<RawClient> {
  const raw = await rawService(h, hub, svc, clientId, v);
  raw.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: filter, qos: options.qos ?? 1, ...(options.rh === undefined ? {} : { rh: options.rh }) }] });
  await raw.next("suback");
  await pollUntil(() => raw.received.some((p) => p.cmd === "publish" && p.topic === marker), { timeoutMs: 10_000, what: `retained ${marker}` });
  raw.send({ cmd: "pingreq" });
  await raw.next("pingresp");
  return raw;
}

function publishes(raw: RawClient, topic?: string): { topic: string; payload: string; retain: boolean; qos: number; properties: Record<string, unknown> | undefined }[] {
  return raw.received.flatMap((p) => (p.cmd === "publish" && (topic === undefined || p.topic === topic) ? [{ topic: p.topic, payload: p.payload.toString(), retain: p.retain, qos: p.qos, properties: p.properties }] : []));
}

describe.each(VERSIONS)("retained messages, MQTT version level %s", (v) => {
  const tag = `v${v}`;

  it("a new subscriber gets the retained message with the retain flag, at min(retained QoS, granted QoS)", async () => {
    await pub.publishAsync(`events/ret/${tag}/q1`, "kept at 1", { qos: 1, retain: true });
    await pub.publishAsync(`ret/${tag}/q0`, "kept at 0", { qos: 0, retain: true });
    for (const q of [0, 1, 2] as const) {
      const s = await client(v, `ret-${tag}-${q}`);
      await s.c.subscribeAsync({ [`events/ret/${tag}/#`]: { qos: q }, [`ret/${tag}/#`]: { qos: q } });
      const [m1] = await s.inbox.waitTopic(`events/ret/${tag}/q1`);
      expect(m1?.payload).toBe("kept at 1");
      expect(m1?.packet.retain).toBe(true);
      expect(m1?.packet.qos, `granted ${q}`).toBe(Math.min(1, q));
      const [m0] = await s.inbox.waitTopic(`ret/${tag}/q0`);
      expect(m0?.packet.retain).toBe(true);
      expect(m0?.packet.qos, `granted ${q}`).toBe(0);
    }
  });

  it("the newest retained message replaces the older; an empty retained payload clears it", async () => {
    await pub.publishAsync(`events/retclr/${tag}/a`, "old", { qos: 1, retain: true });
    await pub.publishAsync(`events/retclr/${tag}/a`, "new", { qos: 1, retain: true });
    await pub.publishAsync(`events/retclr/${tag}/b`, "to be cleared", { qos: 1, retain: true });
    await pub.publishAsync(`events/retclr/${tag}/marker`, "marker", { qos: 1, retain: true });
    const before = await retainedSeenBy(v, `retclr-before-${tag}`, `events/retclr/${tag}/#`, `events/retclr/${tag}/marker`);
    expect(publishes(before, `events/retclr/${tag}/a`).map((p) => p.payload)).toEqual(["new"]);
    expect(publishes(before, `events/retclr/${tag}/b`).map((p) => p.payload)).toEqual(["to be cleared"]);
    await pub.publishAsync(`events/retclr/${tag}/b`, "", { qos: 1, retain: true });
    const after = await retainedSeenBy(v, `retclr-after-${tag}`, `events/retclr/${tag}/#`, `events/retclr/${tag}/marker`);
    expect(publishes(after, `events/retclr/${tag}/b`)).toEqual([]);
    expect(publishes(after, `events/retclr/${tag}/a`).map((p) => p.payload)).toEqual(["new"]);
  });

  it("a live retained publish reaches existing subscribers (5.0 without retain-as-published: flag cleared)", async () => {
    const s = await client(v, `retlive-${tag}`);
    await s.c.subscribeAsync(`retlive/${tag}/#`, { qos: 0 });
    await pub.publishAsync(`retlive/${tag}/x`, "live", { qos: 0, retain: true });
    const [m] = await s.inbox.waitTopic(`retlive/${tag}/x`);
    expect(m?.payload).toBe("live");
    // MQTT 3.1.1 §3.3.1.3: a message sent because of an established subscription has retain 0
    expect(m?.packet.retain).toBe(false);
    await pub.publishAsync(`retlive/${tag}/x`, "", { qos: 0, retain: true });
  });
});

describe("retained messages, MQTT 5", () => {
  it("retain handling: 0 sends on every subscribe, 1 only for a new subscription, 2 never", async () => {
    await pub.publishAsync("events/rh/t/x", "retained", { qos: 1, retain: true });
    await pub.publishAsync("events/rhmark/t", "marker", { qos: 1, retain: true });
    const raw = await rawService(h, hub, svc, "rh-client", 5);
    const round = async (id: number, rh: number): Promise<number> => {
      const start = raw.received.length;
      // the marker filter (rh 0) in the same SUBSCRIBE: once its retained message and a PINGREQ round trip are in,
      // whatever the first filter gets has come too
      raw.send({ cmd: "subscribe", messageId: id, subscriptions: [{ topic: "events/rh/t/#", qos: 1, rh }, { topic: "events/rhmark/#", qos: 0, rh: 0 }] });
      await raw.next("suback");
      await pollUntil(() => raw.received.slice(start).some((p) => p.cmd === "publish" && p.topic === "events/rhmark/t"), { what: "the marker" });
      raw.send({ cmd: "pingreq" });
      await raw.next("pingresp");
      const got = raw.received.slice(start).filter((p) => p.cmd === "publish" && p.topic === "events/rh/t/x");
      for (const p of got) if (p.cmd === "publish" && p.qos > 0) raw.send({ cmd: "puback", messageId: p.messageId ?? 0, reasonCode: 0 });
      return got.length;
    };
    expect(await round(1, 1)).toBe(1); // new subscription
    expect(await round(2, 1)).toBe(0); // it exists already
    expect(await round(3, 0)).toBe(1);
    expect(await round(4, 2)).toBe(0);
    const fresh = await rawService(h, hub, svc, "rh-fresh", 5);
    fresh.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "events/rh/t/#", qos: 1, rh: 2 }, { topic: "events/rhmark/#", qos: 0 }] });
    await fresh.next("suback");
    await pollUntil(() => fresh.received.some((p) => p.cmd === "publish" && p.topic === "events/rhmark/t"), { what: "the marker" });
    fresh.send({ cmd: "pingreq" });
    await fresh.next("pingresp");
    expect(publishes(fresh, "events/rh/t/x")).toEqual([]);
  });

  it("retained messages keep their properties; an expired retained message is no longer delivered", async () => {
    const t0 = Date.now();
    await pub.publishAsync("events/retexp/short", "short-lived", { qos: 1, retain: true, properties: { messageExpiryInterval: 1, contentType: "text/plain", userProperties: { k: "v" } } });
    await pub.publishAsync("events/retexp/marker", "marker", { qos: 1, retain: true });
    const early = await retainedSeenBy(5, "retexp-early", "events/retexp/#", "events/retexp/marker");
    const [p] = publishes(early, "events/retexp/short");
    expect(p?.retain).toBe(true);
    expect(p?.properties?.["contentType"]).toBe("text/plain");
    expect(p?.properties?.["userProperties"]).toEqual({ k: "v" });
    expect(p?.properties?.["messageExpiryInterval"]).toBe(1);
    // a fresh subscriber after the second has passed gets the marker only
    let i = 0;
    const late = await pollUntil(
      async () => {
        const r = await retainedSeenBy(5, `retexp-late-${i++}`, "events/retexp/#", "events/retexp/marker");
        r.end();
        return publishes(r, "events/retexp/short").length === 0 ? Date.now() : undefined;
      },
      { timeoutMs: 5_000, intervalMs: 100, what: "the retained message to expire" },
    );
    expect(late - t0).toBeGreaterThanOrEqual(1_000);
  });

  it("shared subscriptions get no retained messages", async () => {
    await pub.publishAsync("events/retshare/x", "retained", { qos: 1, retain: true });
    await pub.publishAsync("events/retsharemark/x", "marker", { qos: 1, retain: true });
    const raw = await rawService(h, hub, svc, "retshare", 5);
    raw.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "$share/g/events/retshare/#", qos: 1 }, { topic: "events/retsharemark/#", qos: 0 }] });
    await raw.next("suback");
    await pollUntil(() => raw.received.some((p) => p.cmd === "publish" && p.topic === "events/retsharemark/x"), { what: "the marker" });
    raw.send({ cmd: "pingreq" });
    await raw.next("pingresp");
    expect(publishes(raw, "events/retshare/x")).toEqual([]);
  });
});

/** A raw client with a will, connected as a service user (or the given device). */
async function withWill(v: Version, clientId: string, will: NonNullable<IConnectPacket["will"]>, extra: Partial<IConnectPacket> = {}): Promise<RawClient> {
  return rawService(h, hub, svc, clientId, v, { will, ...extra });
}

describe.each(VERSIONS)("wills, MQTT version level %s", (v) => {
  const tag = `v${v}`;

  it("a connection lost without DISCONNECT publishes the will (QoS 1: stored)", async () => {
    const s = await client(v, `will-sub-${tag}`);
    await s.c.subscribeAsync(`events/will/${tag}/#`, { qos: 1 });
    const raw = await withWill(v, `will-${tag}`, { topic: `events/will/${tag}/gone`, payload: Buffer.from("offline"), qos: 1, retain: false });
    raw.end(); // the socket is destroyed: no DISCONNECT
    const [m] = await s.inbox.waitTopic(`events/will/${tag}/gone`);
    expect(m?.payload).toBe("offline");
    expect(await streamCount(hub, "EVENTS", `events.will.${tag}.gone`)).toBe(1);
  });

  it("a normal DISCONNECT discards the will", async () => {
    const s = await client(v, `nowill-sub-${tag}`);
    await s.c.subscribeAsync(`nowill/${tag}/#`, { qos: 0 });
    const raw = await withWill(v, `nowill-${tag}`, { topic: `nowill/${tag}/gone`, payload: Buffer.from("offline"), qos: 0, retain: false });
    raw.send({ cmd: "disconnect" });
    await raw.waitClosed(5_000);
    await pub.publishAsync(`nowill/${tag}/marker`, "marker", { qos: 0 });
    await s.inbox.waitTopic(`nowill/${tag}/marker`);
    // the will would be published when the ingress closed that connection, before it ever saw the marker; a
    // short grace for "nothing arrives" covers a will published late all the same
    await new Promise((r) => setTimeout(r, 300));
    expect(s.inbox.count(`nowill/${tag}/gone`)).toBe(0);
  });

  it("a retained will is kept for later subscribers", async () => {
    const raw = await withWill(v, `retwill-${tag}`, { topic: `events/retwill/${tag}/status`, payload: Buffer.from("dead"), qos: 1, retain: true });
    raw.end();
    const later = await pollUntil(
      async () => {
        const r = await rawService(h, hub, svc, `retwill-late-${tag}`, v);
        r.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: `events/retwill/${tag}/#`, qos: 1 }] });
        await r.next("suback");
        const p = await r.next("publish", 500).catch(() => undefined);
        r.end();
        return p;
      },
      { timeoutMs: 10_000, what: "the retained will" },
    );
    expect(later.payload.toString()).toBe("dead");
    expect(later.retain).toBe(true);
    await pub.publishAsync(`events/retwill/${tag}/status`, "", { qos: 1, retain: true });
  });

  it("an mqtt device's will outside its permissions is not published; inside them it is", async () => {
    const name = `willdev-${v}`;
    const d = mqttDevice(hub, name);
    const s = await client(v, `willdev-sub-${tag}`);
    await s.c.subscribeAsync(`events/plant-a/#`, { qos: 1 });
    const connectAsDevice = async (cid: string, topic: string): Promise<RawClient> => {
      const raw = await RawClient.open(h, mqttPort(hub), v);
      const ack = await raw.connect({ clientId: cid, username: name, password: Buffer.from(d.jwt), clean: true, will: { topic, payload: Buffer.from(cid), qos: 1, retain: false } });
      expect(v === 5 ? ack.reasonCode : ack.returnCode).toBe(0);
      return raw;
    };
    (await connectAsDevice(`willdev-out-${tag}`, `events/plant-a/someone-else/alarm`)).end();
    (await connectAsDevice(`willdev-in-${tag}`, `events/plant-a/${name}/alarm`)).end();
    const [m] = await s.inbox.waitTopic(`events/plant-a/${name}/alarm`);
    expect(m?.payload).toBe(`willdev-in-${tag}`);
    // the refused will would have been published first (its connection ended first)
    expect(s.inbox.count("events/plant-a/someone-else/alarm")).toBe(0);
    expect(await streamCount(hub, "EVENTS", "events.plant-a.someone-else.alarm")).toBe(0);
  });
});

describe("wills, MQTT 5", () => {
  it("DISCONNECT with reason 0x04 publishes the will; its properties are kept", async () => {
    const s = await client(5, "will04-sub");
    await s.c.subscribeAsync("will04/#", { qos: 0 });
    const raw = await withWill(5, "will04", { topic: "will04/gone", payload: Buffer.from("bye"), qos: 0, retain: false, properties: { contentType: "text/plain", userProperties: { why: "asked" } } });
    raw.send({ cmd: "disconnect", reasonCode: 0x04 });
    const [m] = await s.inbox.waitTopic("will04/gone");
    expect(m?.payload).toBe("bye");
    expect(m?.packet.properties?.contentType).toBe("text/plain");
    expect(m?.packet.properties?.userProperties).toEqual({ why: "asked" });
  });

  it("the will delay: published only once the delay has passed", async () => {
    const s = await client(5, "willdelay-sub");
    await s.c.subscribeAsync("willdelay/#", { qos: 0 });
    const raw = await withWill(5, "willdelay", { topic: "willdelay/gone", payload: Buffer.from("late"), qos: 0, retain: false, properties: { willDelayInterval: 1 } }, { clean: false, properties: { sessionExpiryInterval: 60 } });
    const t0 = Date.now();
    raw.end();
    await s.inbox.waitTopic("willdelay/gone", 1, 5_000);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(900);
  });

  it("the will delay: no will when the client reconnects within it", async () => {
    const s = await client(5, "willback-sub");
    await s.c.subscribeAsync("willback/#", { qos: 0 });
    const session = { clean: false, properties: { sessionExpiryInterval: 60 } };
    const raw = await withWill(5, "willback", { topic: "willback/gone", payload: Buffer.from("should not"), qos: 0, retain: false, properties: { willDelayInterval: 1 } }, session);
    const t0 = Date.now();
    raw.end();
    await raw.waitClosed();
    const back = await rawService(h, hub, svc, "willback", 5, session);
    expect(Date.now() - t0).toBeLessThan(1_000);
    // waiting out the 1 s delay (and a little) is the point of this test: the will must not come
    await new Promise((r) => setTimeout(r, 1_500));
    await pub.publishAsync("willback/marker", "marker", { qos: 0 });
    await s.inbox.waitTopic("willback/marker");
    expect(s.inbox.count("willback/gone")).toBe(0);
    expect(back.closed).toBe(false);
  });

  it("a takeover with clean start 1 publishes the old connection's will", async () => {
    const s = await client(5, "willtake-sub");
    await s.c.subscribeAsync("willtake/#", { qos: 0 });
    const old = await withWill(5, "willtake", { topic: "willtake/old", payload: Buffer.from("taken over"), qos: 0, retain: false });
    await rawService(h, hub, svc, "willtake", 5, { clean: true });
    await old.waitClosed(5_000);
    expect(old.received.find((p) => p.cmd === "disconnect")?.reasonCode).toBe(0x8e);
    expect((await s.inbox.waitTopic("willtake/old"))[0]?.payload).toBe("taken over");
  });

  it("a takeover with clean start 0 within the old connection's will delay publishes no will", async () => {
    const s = await client(5, "willtake0-sub");
    await s.c.subscribeAsync("willtake0/#", { qos: 0 });
    const session = { clean: false, properties: { sessionExpiryInterval: 60 } };
    const old = await withWill(5, "willtake0", { topic: "willtake0/old", payload: Buffer.from("x"), qos: 0, retain: false, properties: { willDelayInterval: 5 } }, session);
    const fresh = await rawService(h, hub, svc, "willtake0", 5, session);
    await old.waitClosed(5_000);
    await pub.publishAsync("willtake0/marker", "marker", { qos: 0 });
    await s.inbox.waitTopic("willtake0/marker");
    // a will published on the takeover would have come before the marker
    expect(s.inbox.count("willtake0/old")).toBe(0);
    expect(fresh.closed).toBe(false);
  });
});
