import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { status } from "@grpc/grpc-js";
import { jetstream, jetstreamManager, type StoredMsg } from "@nats-io/jetstream";
import { headers as natsHeaders, type NatsConnection } from "@nats-io/transport-node";
import { ConsumerServiceClient, FlowControl, Settlement_Kind, type Delivery } from "../../proto/gen/fabric/v1/consumer.js";
import { pollUntil } from "../../fabric/core/index.js";
import { DEAD_LETTER_HEADERS } from "../../fabric/grpc/consumer-dead-letter.js";
import { startGateway } from "../../fabric/grpc/server.js";
import { tenantServerOptions } from "../../fabric/hub/index.js";
import { grpcClient, grpcTestbed, Harness, testLogger, type TestHub } from "../harness/index.js";
import { Consume, fetchMsgs, range, seqOf, settle } from "./consumer-client.js";

const h = new Harness();
let hub: TestHub;
let nc: NatsConnection;
let svc: string;
afterAll(() => h.dispose());
beforeAll(async () => {
  ({ hub, nc, service: svc } = await grpcTestbed(h, "flow-svc", { windows: false }));
});

function client(port = hub.grpc ?? 0): ConsumerServiceClient {
  const c = grpcClient(ConsumerServiceClient, port);
  h.defer(() => c.close());
  return c;
}

async function publish(subjects: string[]): Promise<number[]> {
  const js = jetstream(nc);
  const seqs: number[] = [];
  for (const s of subjects) seqs.push((await js.publish(s, JSON.stringify({ ts: 1, value: 1 }))).seq);
  return seqs;
}

const WINDOW = FlowControl.FLOW_CONTROL_WINDOW;

describe("Consume options", () => {
  it("a Settlements frame of over 10 000 settlements applies them all; the refused ones come back as SettleError and the stream goes on", async () => {
    const seqs = await publish(range(5).map((i) => `telemetry.s1.d${i}.temp`));
    const c = new Consume(client(), svc).open({ durable: "s1", filterSubjects: ["telemetry.s1.>"] });
    await c.opening();
    c.credit(5);
    await c.count(5);
    const bogus = range(10_001).map((i) => ({ ackToken: `bogus-${i}`, kind: Settlement_Kind.KIND_ACK, delayMs: 0 }));
    const acks = c.received().map((d) => ({ ackToken: d.ackToken, kind: Settlement_Kind.KIND_ACK, delayMs: 0 }));
    c.call.write({ frame: { $case: "settle", value: { settlements: [...acks.slice(0, 2), ...bogus, ...acks.slice(2)] } } });
    await pollUntil(() => c.settleErrors.length >= 10_001 || (c.error !== undefined && Promise.reject(c.error)), { what: "10 001 settle errors" });
    expect(new Set(c.settleErrors.map((e) => e.code))).toEqual(new Set(["FABRIC_ERR_STALE_TOKEN"]));
    expect(c.settleErrors[10_000]?.ackToken).toBe("bogus-10000");
    await c.heartbeat((b) => b.ackPending === 0 && b.pending === 0);
    expect(c.ended).toBe(false);
    // and the stream goes on
    const [next] = await publish(["telemetry.s1.d9.temp"]);
    c.credit(1);
    await c.count(6);
    expect(c.received().map(seqOf)).toEqual([...seqs, next]);
    c.call.end();
    expect(await c.ending()).toBeUndefined();
  });

  it("window flow control: never more than N unsettled outstanding, settling refills, every message arrives; credits are refused", async () => {
    const seqs = await publish(range(30).map((i) => `telemetry.w1.d${i % 3}.temp`));
    const c = new Consume(client(), svc).open({ durable: "w1", filterSubjects: ["telemetry.w1.>"], flowControl: WINDOW, maxMessagesInFlight: 5 });
    await c.opening();
    await c.count(5);
    // a full window: a heartbeat later still five, and the heartbeat reports no room
    const full = await c.heartbeat();
    expect(full.creditMessages).toBe(0);
    expect(c.deliveries).toHaveLength(5);
    // settle two at a time: exactly two more come each time
    while (c.settled < 30) {
      const unsettled = c.received().slice(c.settled, c.settled + 2);
      c.ack(unsettled);
      await c.count(Math.min(30, c.settled + 5));
    }
    expect(c.received().map(seqOf)).toEqual(seqs);
    expect(c.maxOutstanding).toBe(5);
    await c.heartbeat((b) => b.ackPending === 0 && b.pending === 0 && b.creditMessages === 5);
    c.credit(1);
    const err = await c.ending();
    expect(err?.code).toBe(status.INVALID_ARGUMENT);
    expect(err?.details).toMatch(/flow_control WINDOW/);
  });

  it("window flow control: a lease that ran out makes room too", async () => {
    const [first, second] = await publish(["telemetry.w2.a.temp", "telemetry.w2.b.temp"]);
    const c = new Consume(client(), svc).open({ filterSubjects: ["telemetry.w2.>"], flowControl: WINDOW, maxMessagesInFlight: 1, ackWaitMs: 500 });
    await c.opening();
    await c.count(1);
    expect(seqOf(c.received()[0] ?? ({} as Delivery))).toBe(first);
    // never settled: once its lease ended the window has room again (for the next one or the redelivery)
    await c.count(2);
    expect((c.deliveries[1]?.at ?? 0) - (c.deliveries[0]?.at ?? 0)).toBeGreaterThanOrEqual(450);
    const d2 = c.received()[1] ?? ({} as Delivery);
    expect([first, second]).toContain(seqOf(d2));
    expect(d2.attempt).toBe(seqOf(d2) === first ? 2 : 1);
    c.call.end();
    await c.ending();
  });

  it("automatic lease extension: a delivery held past its ack wait is not redelivered until the extension runs out", async () => {
    const [held, acked] = await publish(["telemetry.x1.a.temp", "telemetry.x1.b.temp"]);
    const c = new Consume(client(), svc).open({ durable: "x1", filterSubjects: ["telemetry.x1.>"], ackWaitMs: 1_000, maxLeaseExtensionMs: 4_000 });
    await c.opening();
    c.credit(10);
    await c.count(2);
    const t0 = c.deliveries[0]?.at ?? 0;
    const [h1, a1] = c.received();
    if (h1 === undefined || a1 === undefined) throw new Error("two deliveries expected");
    expect([seqOf(h1), seqOf(a1)]).toEqual([held, acked]);
    // the announced lease end is the extension's, not the ack wait's
    expect(h1.leaseExpiresAtMs - t0).toBeGreaterThan(3_800);
    expect(h1.leaseExpiresAtMs - t0).toBeLessThanOrEqual(4_100);
    await pollUntil(() => Date.now() >= t0 + 2_500, { intervalMs: 20, what: "2.5 s after delivery" });
    expect(c.deliveries).toHaveLength(2);
    // the token still holds 2.5 s after delivery with a 1 s ack wait
    c.settle(a1, Settlement_Kind.KIND_ACK);
    await c.heartbeat((b) => b.ackPending === 1);
    expect(c.settleErrors).toEqual([]);
    // once the extension ran out, JetStream redelivers
    const again = await pollUntil(() => c.deliveries.find((x) => seqOf(x.d) === held && x.d.attempt === 2), { what: "the redelivery", timeoutMs: 10_000 });
    expect(again.at - t0).toBeGreaterThanOrEqual(3_900);
    expect(again.at - t0).toBeLessThan(6_500);
    expect(c.deliveries).toHaveLength(3);
    c.settle(again.d, Settlement_Kind.KIND_ACK);
    await c.heartbeat((b) => b.ackPending === 0);
    expect(c.settleErrors).toEqual([]);
    c.call.end();
    await c.ending();
  });

  it("max_deliveries: a message nak'ed or left unsettled that often lands in DEAD_LETTER exactly once (two gateways), and the consumer goes on", async () => {
    // a second gateway also receives JetStream's advisories: the copy must still be stored once
    const gw = await startGateway({ host: "127.0.0.1", port: 0, ...(await tenantServerOptions(hub.keystore, hub.dataDir, "fleet", hub.urls, testLogger(), "hub")), logger: testLogger() });
    h.defer(() => gw.stop());
    const js = jetstream(nc);
    const hdrs = natsHeaders();
    hdrs.set("X-Origin", "poison-test");
    const poison = (await js.publish("telemetry.dl1.p.temp", "nak me", { headers: hdrs })).seq;
    const stuck = (await js.publish("telemetry.dl1.q.temp", "hold me")).seq;
    const good = (await js.publish("telemetry.dl1.g.temp", "ack me")).seq;

    const c = new Consume(client(), svc).open({ durable: "dl1", filterSubjects: ["telemetry.dl1.>"], flowControl: WINDOW, maxDeliveries: 3, ackWaitMs: 1_000 });
    await c.opening();
    // nak every delivery of the poison message, ack the good ones, leave `stuck` alone
    let handled = 0;
    const settleNew = (): void => {
      for (const d of c.received().slice(handled)) {
        if (seqOf(d) === poison) c.settle(d, Settlement_Kind.KIND_NACK);
        else if (seqOf(d) !== stuck) c.settle(d, Settlement_Kind.KIND_ACK);
      }
      handled = c.deliveries.length;
    };
    const jsm = await jetstreamManager(nc);
    const dead = async (): Promise<number> => (await jsm.streams.info("DEAD_LETTER", { subjects_filter: "deadletter.TELEMETRY.dl1" })).state.messages;
    await pollUntil(
      async () => {
        settleNew();
        return (await dead()) >= 2;
      },
      { what: "two dead letters", timeoutMs: 15_000, intervalMs: 50 },
    );
    expect(c.received().filter((d) => seqOf(d) === poison).map((d) => d.attempt)).toEqual([1, 2, 3]);
    expect(c.received().filter((d) => seqOf(d) === stuck).map((d) => d.attempt)).toEqual([1, 2, 3]);
    expect(c.received().filter((d) => seqOf(d) === good)).toHaveLength(1);

    // the consumer goes on: a later message arrives and is acked (which also lets both gateways finish their copies)
    const after = (await js.publish("telemetry.dl1.g.temp", "after")).seq;
    await pollUntil(
      () => {
        settleNew();
        return c.received().some((d) => seqOf(d) === after);
      },
      { what: "the message after" },
    );
    settleNew();
    await c.heartbeat((b) => b.ackPending === 0 && b.pending === 0);
    expect(await dead()).toBe(2);

    const letters: StoredMsg[] = [];
    for (const seq of [poison, stuck]) {
      const m = await pollUntil(async () => {
        const info = await jsm.streams.info("DEAD_LETTER", { subjects_filter: "deadletter.TELEMETRY.dl1" });
        for (let s = info.state.first_seq; s <= info.state.last_seq; s++) {
          const sm = await jsm.streams.getMessage("DEAD_LETTER", { seq: s }).catch(() => null);
          if (sm?.subject === "deadletter.TELEMETRY.dl1" && sm.header.get(DEAD_LETTER_HEADERS.sequence) === String(seq)) return sm;
        }
        return undefined;
      });
      letters.push(m);
    }
    const [p, q] = letters;
    expect(p?.string()).toBe("nak me");
    expect(p?.header.get("X-Origin")).toBe("poison-test");
    for (const [m, subject] of [
      [p, "telemetry.dl1.p.temp"],
      [q, "telemetry.dl1.q.temp"],
    ] as const) {
      expect(m?.header.get(DEAD_LETTER_HEADERS.stream)).toBe("TELEMETRY");
      expect(m?.header.get(DEAD_LETTER_HEADERS.subject)).toBe(subject);
      expect(m?.header.get(DEAD_LETTER_HEADERS.consumer)).toBe("dl1");
      expect(m?.header.get(DEAD_LETTER_HEADERS.deliveries)).toBe("3");
    }
    expect(p?.header.get(DEAD_LETTER_HEADERS.reason)).toMatch(/nak'ed at the last allowed delivery/);
    expect(q?.header.get(DEAD_LETTER_HEADERS.reason)).toMatch(/max deliveries reached/);
    c.call.end();
    await c.ending();
  });

  it("max_deliveries with Fetch and Settle: the last nak dead-letters and terminates (the consumer's ack floor moves past it)", async () => {
    const [poison] = await publish(["telemetry.dl2.p.temp"]);
    const c = client();
    const f = { durable: "dl2", filterSubjects: ["telemetry.dl2.>"], maxDeliveries: 2, waitMs: 300 };
    for (const attempt of [1, 2]) {
      const r = await fetchMsgs(c, svc, f);
      expect(r.deliveries.map((d) => [seqOf(d), d.attempt])).toEqual([[poison, attempt]]);
      const res = await settle(c, svc, r.deliveries.map((d) => ({ ackToken: d.ackToken, kind: Settlement_Kind.KIND_NACK, delayMs: 0 })));
      expect(res.errors).toEqual([]);
    }
    const jsm = await jetstreamManager(nc);
    const letter = await pollUntil(async () => (await jsm.streams.getMessage("DEAD_LETTER", { last_by_subj: "deadletter.TELEMETRY.dl2" }).catch(() => null)) ?? undefined, { what: "the dead letter" });
    expect(letter.header.get(DEAD_LETTER_HEADERS.sequence)).toBe(String(poison));
    expect(letter.header.get(DEAD_LETTER_HEADERS.deliveries)).toBe("2");
    await pollUntil(async () => (await jsm.consumers.info("TELEMETRY", "dl2")).ack_floor.stream_seq >= (poison ?? 0), { what: "the ack floor past the poison message" });
    expect((await fetchMsgs(c, svc, f)).deliveries).toEqual([]);
    expect((await jsm.consumers.info("TELEMETRY", "dl2")).config.max_deliver).toBe(2);
  });
});
