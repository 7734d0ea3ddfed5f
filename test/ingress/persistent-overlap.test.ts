/**
 * A persistent session's QoS 1/2 subscriptions are served by one durable JetStream consumer per stream, and
 * JetStream refuses overlapping filter subjects: overlapping subscriptions (`events/ovp/#` with
 * `events/ovp/+/c`) must still be granted, deliver one copy at the highest QoS live and after being away, and
 * never lock the client out of its session.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { MqttClient } from "mqtt";
import { pollUntil } from "../../fabric/core/index.js";
import { Harness, type TestHub } from "../harness/index.js";
import { connectMqtt, Inbox, mqttTestbed, rawService, type ServiceUser, versionOptions } from "./mqtt-helpers.js";

const h = new Harness();
let hub: TestHub;
let url: string;
let svc: ServiceUser;
/** Publishes through the ingress like any MQTT 5 client. */
let pub: MqttClient;
afterAll(() => h.dispose());
beforeAll(async () => {
  ({ hub, url, svc, pub } = await mqttTestbed(h, "ovp"));
});

describe("overlapping subscriptions in a persistent session", () => {
  it.each([4, 5] as const)("MQTT %s: are granted and deliver one copy at the highest QoS, live and queued", async (v) => {
    const cid = `ovp-${v}`;
    const session = v === 5 ? { clean: false, properties: { sessionExpiryInterval: 300 } } : { clean: false };
    const first = await connectMqtt(h, url, { ...versionOptions(v), ...svc.auth(cid), ...session });
    const inbox = new Inbox(first.client);
    const granted = await first.client.subscribeAsync({ [`events/ovp/${v}/#`]: { qos: 1 }, [`events/ovp/${v}/+/c`]: { qos: 2 } });
    expect(granted.map((g) => g.qos).sort()).toEqual([1, 2]);
    await pub.publishAsync(`events/ovp/${v}/b/c`, "live", { qos: 2 });
    await pub.publishAsync(`events/ovp/${v}/end/c`, "end", { qos: 2 });
    await inbox.waitTopic(`events/ovp/${v}/end/c`);
    expect(inbox.matching((m) => m.topic === `events/ovp/${v}/b/c`).map((m) => [m.payload, m.packet.qos])).toEqual([["live", 2]]);
    await first.client.endAsync();
    await pub.publishAsync(`events/ovp/${v}/b/c`, "away", { qos: 2 });
    const again = await connectMqtt(h, url, { ...versionOptions(v), ...svc.auth(cid), ...session });
    expect(again.connack.sessionPresent).toBe(true);
    const inbox2 = new Inbox(again.client);
    await pub.publishAsync(`events/ovp/${v}/end/c`, "end again", { qos: 2 });
    await inbox2.waitFor((m) => m.payload === "end again");
    expect(inbox2.matching((m) => m.topic === `events/ovp/${v}/b/c`).map((m) => [m.payload, m.packet.qos])).toEqual([["away", 2]]);
  });

  it("MQTT 3.1.1: a narrower subscription added later, in its own SUBSCRIBE, is granted too", async () => {
    const { client: c } = await connectMqtt(h, url, { ...versionOptions(4), ...svc.auth("ovp-later"), clean: false });
    await c.subscribeAsync("events/ovp-later/#", { qos: 1 });
    const granted = await c.subscribeAsync("events/ovp-later/x", { qos: 1 });
    expect(granted[0]?.qos).toBe(1);
    expect(c.connected).toBe(true);
  });

  it("MQTT 5: a client whose subscribe failed that way can still reconnect to its session and use it", async () => {
    const session = { clean: false, properties: { sessionExpiryInterval: 300 } };
    const raw = await rawService(h, hub, svc, "ovp-locked", 5, session);
    raw.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "events/ovp-locked/#", qos: 1 }, { topic: "events/ovp-locked/+/c", qos: 2 }] });
    await pollUntil(() => raw.closed || raw.received.some((p) => p.cmd === "suback"), { what: "SUBACK or the end" });
    raw.end();
    await raw.waitClosed();
    const again = await rawService(h, hub, svc, "ovp-locked", 5, session);
    again.send({ cmd: "subscribe", messageId: 2, subscriptions: [{ topic: "events/ovp-locked/other", qos: 1 }] });
    const suback = await again.next("suback");
    expect(suback.granted).toEqual([1]);
    expect(again.received.some((p) => p.cmd === "disconnect")).toBe(false);
  });
});
