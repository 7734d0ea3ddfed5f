import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { status, type ServiceError } from "@grpc/grpc-js";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { ConsumerServiceClient, Settlement_Kind, type Delivery, type TailResponse } from "../../proto/gen/fabric/v1/consumer.js";
import { pollUntil } from "../../fabric/core/index.js";
import { startGateway } from "../../fabric/grpc/server.js";
import { tenantServerOptions } from "../../fabric/hub/index.js";
import { addRole, issueUser, pushAccounts, revokeUsers } from "../../identity/index.js";
import { authFor, grpcClient, grpcTestbed, Harness, testLogger, type TestHub } from "../harness/index.js";
import { byNumber, Consume, fetchMsgs, PATHS, range, refused, seqOf, settle } from "./consumer-client.js";

const h = new Harness();
let hub: TestHub;
let nc: NatsConnection;
let svc: string;
afterAll(() => h.dispose());
beforeAll(async () => {
  ({ hub, nc, service: svc } = await grpcTestbed(h, "consumer-svc", { windows: false }));
});

function creds(role: string, name: string, expiresInSec?: number): string {
  const r = issueUser(hub.keystore, { account: "fleet", role, name, ...(expiresInSec === undefined ? {} : { expiresInSec }) });
  if (r.creds === undefined) throw new Error("no creds");
  return r.creds;
}

function client(port = hub.grpc ?? 0): ConsumerServiceClient {
  const c = grpcClient(ConsumerServiceClient, port);
  h.defer(() => c.close());
  return c;
}

/** Publishes JSON readings {ts, value} to the subjects; returns their stream sequences. */
async function publish(subjects: string[], ts = 1_700_000_000_000): Promise<number[]> {
  const js = jetstream(nc);
  const seqs: number[] = [];
  for (const [i, s] of subjects.entries()) seqs.push((await js.publish(s, JSON.stringify({ ts: ts + i, value: i }))).seq);
  return seqs;
}

describe("ConsumerService over the gateway", () => {
  it("Consume: never more deliveries than credits granted; the rest once more credit comes", async () => {
    const seqs = await publish(range(50).map((i) => `telemetry.c1.d${i % 5}.temp`));
    const c = new Consume(client(), svc).open({ durable: "c1", filterSubjects: ["telemetry.c1.>"], start: { position: { $case: "all", value: true } } });
    expect(await c.opening()).toBe("c1");
    c.credit(10);
    await c.count(10);
    const tenth = c.deliveries[9]?.at ?? 0;
    // two heartbeats after the tenth delivery (one when the credit ran out, one periodic): still ten
    await pollUntil(() => c.heartbeats.filter((x) => x.at >= tenth).length >= 2, { what: "two heartbeats after the tenth delivery" });
    expect(c.deliveries).toHaveLength(10);
    const hb = c.heartbeats.at(-1)?.hb;
    expect(hb).toMatchObject({ creditMessages: 0, ackPending: 10, pending: 40 });

    const first = c.received();
    expect(first.map(seqOf)).toEqual(seqs.slice(0, 10));
    const d0 = first[0];
    expect(d0?.attempt).toBe(1);
    expect(d0?.event).toMatchObject({ stream: "TELEMETRY", subject: "telemetry.c1.d0.temp", eventTimeMs: 1_700_000_000_000 });
    expect(JSON.parse(Buffer.from(d0?.event?.data ?? []).toString())).toEqual({ ts: 1_700_000_000_000, value: 0 });
    expect(d0?.event?.storedAtMs).toBeGreaterThan(Date.now() - 60_000);
    // the default lease: 30 s from delivery
    expect((d0?.leaseExpiresAtMs ?? 0) - (c.deliveries[0]?.at ?? 0)).toBeGreaterThan(29_000);
    expect(new Set(first.map((d) => d.ackToken)).size).toBe(10);

    c.ack(first);
    await c.heartbeat((b) => b.ackPending === 0);
    c.credit(40);
    await c.count(50);
    expect(c.received().map(seqOf)).toEqual(seqs);
    c.ack(c.received().slice(10));
    await c.heartbeat((b) => b.ackPending === 0 && b.pending === 0 && b.creditMessages === 0);
    expect(c.overCredit).toBe(0);
    expect(c.deliveries).toHaveLength(50);
    expect(c.settleErrors).toEqual([]);
    c.call.end();
    expect(await c.ending()).toBeUndefined();
  });

  it("Consume: nack redelivers after its delay, in_progress extends the lease, terminate ends redelivery, stale tokens are refused", async () => {
    const seqs = await publish(range(5).map((i) => `telemetry.c2.d${i}.temp`));
    const c = new Consume(client(), svc).open({ durable: "c2", filterSubjects: ["telemetry.c2.>"], ackWaitMs: 1_000 });
    await c.opening();
    c.credit(10);
    await c.count(5);
    const [a, b, t, w, e] = c.received();
    if (a === undefined || b === undefined || t === undefined || w === undefined || e === undefined) throw new Error("five deliveries expected");
    expect([a, b, t, w, e].map(seqOf)).toEqual(seqs);
    expect(e.leaseExpiresAtMs - (c.deliveries[4]?.at ?? 0)).toBeGreaterThan(900);

    c.settle(a, Settlement_Kind.KIND_ACK);
    const nackAt = Date.now();
    c.settle(b, Settlement_Kind.KIND_NACK, 600);
    c.settle(t, Settlement_Kind.KIND_TERMINATE);
    c.settle(w, Settlement_Kind.KIND_IN_PROGRESS);

    const redelivered = (d: Delivery) => (): { d: Delivery; at: number } | undefined => c.deliveries.find((x) => seqOf(x.d) === seqOf(d) && x.d.attempt === 2);
    const again = await pollUntil(redelivered(b), { what: "the nacked message again" });
    expect(again.at - nackAt).toBeGreaterThanOrEqual(590);
    expect(again.d.ackToken).not.toBe(b.ackToken);

    // a settled token, and the token of the attempt before a redelivery: both refused, the stream goes on
    c.settle(a, Settlement_Kind.KIND_ACK);
    c.settle(b, Settlement_Kind.KIND_ACK);
    await pollUntil(() => c.settleErrors.length >= 2, { what: "two settle errors" });
    expect(c.settleErrors.map((e) => [e.ackToken, e.code])).toEqual([
      [a.ackToken, "FABRIC_ERR_STALE_TOKEN"],
      [b.ackToken, "FABRIC_ERR_STALE_TOKEN"],
    ]);
    c.settle(again.d, Settlement_Kind.KIND_ACK);

    // in progress twice more, 600 ms apart: 1.8 s with a 1 s ack wait, and no redelivery
    const wAt = c.deliveries[3]?.at ?? 0;
    for (const at of [600, 1_200]) {
      await pollUntil(() => Date.now() >= wAt + at, { intervalMs: 10, what: "the next in-progress" });
      c.settle(w, Settlement_Kind.KIND_IN_PROGRESS);
    }
    await pollUntil(() => Date.now() >= wAt + 1_800, { intervalMs: 10, what: "1.8 s after delivery" });
    c.settle(w, Settlement_Kind.KIND_ACK);

    // never settled: redelivered when its lease ended; the first attempt's token is stale, the second's settles
    const eAgain = await pollUntil(redelivered(e), { what: "the unsettled message redelivered" });
    expect(eAgain.at - (c.deliveries[4]?.at ?? 0)).toBeGreaterThanOrEqual(950);
    c.settle(e, Settlement_Kind.KIND_ACK);
    c.settle(eAgain.d, Settlement_Kind.KIND_ACK);
    await pollUntil(() => c.settleErrors.length >= 3, { what: "the third settle error" });
    expect(c.settleErrors[2]).toMatchObject({ ackToken: e.ackToken, code: "FABRIC_ERR_STALE_TOKEN" });

    // past ack wait + margin: the terminated one never came back, nothing is pending
    const quiet = await c.heartbeat((x) => x.ackPending === 0 && x.pending === 0, Date.now() + 2_500, "a heartbeat 2.5 s later");
    expect(quiet.ackPending).toBe(0);
    expect(c.received().map(seqOf).sort(byNumber)).toEqual([...seqs, seqOf(b), seqOf(e)].sort(byNumber));
    expect(c.settleErrors).toHaveLength(3);
    expect(c.overCredit).toBe(0);
    c.call.end();
    expect(await c.ending()).toBeUndefined();
  });

  it("Consume: byte credits bound deliveries too", async () => {
    const seqs = await publish(range(8).map((i) => `telemetry.c8.d${i}.temp`));
    const c = new Consume(client(), svc).open({ filterSubjects: ["telemetry.c8.>"] });
    await c.opening();
    // each delivery counts its subject, ack subject, headers and data (well over 60 bytes here): 400 bytes hold a few
    c.granted += 100;
    c.call.write({ frame: { $case: "credit", value: { messages: 100, bytes: 400 } } });
    await c.count(1);
    const from = Date.now();
    await pollUntil(() => c.heartbeats.filter((x) => x.at >= from).length >= 2, { what: "two heartbeats after the first delivery" });
    const k = c.deliveries.length;
    expect(k).toBeGreaterThanOrEqual(1);
    expect(k).toBeLessThanOrEqual(400 / 60);
    const hb = c.heartbeats.at(-1)?.hb;
    expect(hb?.creditMessages).toBe(100 - k);
    expect(hb?.creditBytes).toBeGreaterThan(0);
    expect(hb?.creditBytes).toBeLessThan(400 - k * 60);
    // more bytes: the rest arrive
    c.call.write({ frame: { $case: "credit", value: { messages: 0, bytes: 100_000 } } });
    await c.count(8);
    expect(c.received().map(seqOf)).toEqual(seqs);
    c.call.end();
    expect(await c.ending()).toBeUndefined();
  });

  it("Consume: reconnecting with the same durable resumes: unacked ones come back (at once), acked ones do not; deadlines end the call", async () => {
    const seqs = await publish(range(6).map((i) => `telemetry.c3.d${i}.temp`));
    const c = new Consume(client(), svc).open({ durable: "c3", filterSubjects: ["telemetry.c3.>"] });
    await c.opening();
    c.credit(6);
    await c.count(6);
    const acked = c.received().slice(0, 3);
    c.ack(acked);
    await c.heartbeat((b) => b.ackPending === 3);
    c.call.end();
    expect(await c.ending()).toBeUndefined();

    // ack wait is 30 s: what comes back at once was nak'ed by the gateway when the stream closed
    const again = new Consume(client(), svc).open({ durable: "c3", filterSubjects: ["telemetry.c3.>"] });
    await again.opening();
    again.credit(10);
    await again.count(3);
    const hb = await again.heartbeat((b) => b.pending === 0);
    expect(hb.creditMessages).toBe(7);
    expect(again.received().map(seqOf)).toEqual(seqs.slice(3));
    expect(again.received().map((d) => d.attempt)).toEqual([2, 2, 2]);

    // a deadline ends the call with DEADLINE_EXCEEDED; the delivery it held comes back at once
    again.call.end();
    await again.ending();
    const timed = new Consume(client(), svc, { deadline: Date.now() + 1_500 }).open({ durable: "c3", filterSubjects: ["telemetry.c3.>"] });
    await timed.opening();
    timed.credit(1);
    await timed.count(1);
    expect((await timed.ending())?.code).toBe(status.DEADLINE_EXCEEDED);
    const last = new Consume(client(), svc).open({ durable: "c3", filterSubjects: ["telemetry.c3.>"] });
    await last.opening();
    last.credit(10);
    await last.count(3);
    expect(last.received().map(seqOf).sort(byNumber)).toEqual(seqs.slice(3));
    expect(last.received().find((d) => seqOf(d) === seqOf(timed.received()[0] ?? ({} as Delivery)))?.attempt).toBe(4);
    last.ack(last.received());
    await last.heartbeat((b) => b.ackPending === 0 && b.pending === 0);
    last.call.end();
    expect(await last.ending()).toBeUndefined();
  });

  it("Consume: a gateway stopped mid-stream ends it with UNAVAILABLE; on another gateway nothing acked repeats and nothing unacked is lost", async () => {
    const gw = await startGateway({
      host: "127.0.0.1",
      port: 0,
      ...(await tenantServerOptions(hub.keystore, hub.dataDir, "fleet", hub.urls, testLogger(), "hub")),
      logger: testLogger(),
    });
    h.defer(() => gw.stop());
    const seqs = await publish(range(20).map((i) => `telemetry.c4.d${i % 4}.temp`));
    const c = new Consume(client(gw.port), svc).open({ durable: "c4", filterSubjects: ["telemetry.c4.>"], ackWaitMs: 2_000 });
    await c.opening();
    c.credit(12);
    await c.count(12);
    const acked = c.received().slice(0, 8);
    c.ack(acked);
    await c.heartbeat((b) => b.ackPending === 4);
    // a Tail on the same gateway ends with UNAVAILABLE too
    const tail = client(gw.port).tail({ stream: "TELEMETRY", filterSubjects: ["telemetry.c4.>"] }, authFor(svc, PATHS.tail.path));
    let tailed = 0;
    let tailError: ServiceError | undefined;
    tail.on("data", () => tailed++);
    tail.on("error", (e: ServiceError) => (tailError = e));
    await pollUntil(() => tailed >= 20, { what: "the tail of all 20" });
    const t0 = Date.now();
    await gw.stop();
    expect(Date.now() - t0).toBeLessThan(4_000); // the streams ended themselves: no forced shutdown
    expect((await c.ending())?.code).toBe(status.UNAVAILABLE);
    await pollUntil(() => tailError, { what: "the tail's end" });
    expect(tailError?.code).toBe(status.UNAVAILABLE);

    const again = new Consume(client(), svc).open({ durable: "c4", filterSubjects: ["telemetry.c4.>"], ackWaitMs: 2_000 });
    await again.opening();
    again.credit(100);
    await again.count(12, "the 4 unacked and 8 never delivered");
    again.ack(again.received());
    await again.heartbeat((b) => b.ackPending === 0 && b.pending === 0);
    const ackedSeqs = new Set(acked.map(seqOf));
    const second = again.received().map(seqOf);
    expect(second.filter((s) => ackedSeqs.has(s))).toEqual([]);
    expect(new Set([...ackedSeqs, ...second])).toEqual(new Set(seqs));
    expect(second).toHaveLength(12);
    again.call.end();
    await again.ending();
  });

  it("Consume: filters beyond the caller's role, revoked, expired, forged and replayed credentials are refused", async () => {
    addRole(hub.keystore, "fleet", { name: "plant-a-reader", sub: ["telemetry.plant-a.>", "_INBOX.>"], pub: ["_INBOX.>"] });
    await pushAccounts(hub.keystore, { servers: hub.urls, accounts: ["fleet"] });
    const reader = creds("plant-a-reader", "reader-1");
    const c = client();
    // the gateway knows the new role once the pushed account reached it
    await pollUntil(
      async () => {
        const ok = new Consume(c, reader).open({ filterSubjects: ["telemetry.plant-a.>"] });
        await ok.opening().catch(() => undefined);
        ok.call.end();
        return ok.opened !== undefined;
      },
      { what: "the custom role at the gateway", intervalMs: 200 },
    );
    const wide = new Consume(c, reader).open({ filterSubjects: ["telemetry.>"] });
    const denied = await wide.ending();
    expect(denied?.code).toBe(status.PERMISSION_DENIED);
    expect(denied?.details).toMatch(/telemetry\.>/);
    expect(denied?.metadata.get("fabric-error-code")).toEqual(["FABRIC_ERR_PERMISSION_DENIED"]);

    // revoked while consuming: cut within a second of the push
    const victim = creds("service", "victim-c5");
    const v = new Consume(c, victim).open({ filterSubjects: ["telemetry.c5.>"] });
    await v.opening();
    v.credit(10);
    revokeUsers(hub.keystore, "fleet", "victim-c5", "service");
    await pushAccounts(hub.keystore, { servers: hub.urls, accounts: ["fleet"] });
    const pushed = Date.now();
    const cut = await pollUntil(() => v.ended && (v.error ?? "ended without an error"), { what: "the revoked caller's stream to end", timeoutMs: 5_000 });
    expect(Date.now() - pushed).toBeLessThan(1_000);
    expect(typeof cut === "string" ? cut : cut.code).toBe(status.UNAUTHENTICATED);

    // metadata signed for another method, a tampered signature
    const other = new Consume(c, svc, { md: authFor(svc, PATHS.fetch.path) }).open({ filterSubjects: ["telemetry.c5.>"] });
    expect((await other.ending())?.code).toBe(status.UNAUTHENTICATED);
    const md = authFor(svc, PATHS.consume.path);
    const sig = String(md.get("fabric-sig")[0]);
    md.set("fabric-sig", `${sig.slice(0, -2)}${sig.endsWith("AA") ? "BB" : "AA"}`);
    const tampered = new Consume(c, svc, { md }).open({ filterSubjects: ["telemetry.c5.>"] });
    expect((await tampered.ending())?.code).toBe(status.UNAUTHENTICATED);

    // a replayed request: the same metadata twice
    const once = authFor(svc, PATHS.fetch.path);
    await fetchMsgs(c, svc, { durable: "c5", filterSubjects: ["telemetry.c5.>"], waitMs: 100 }, undefined, once);
    const replay = await refused(fetchMsgs(c, svc, { durable: "c5", filterSubjects: ["telemetry.c5.>"], waitMs: 100 }, undefined, once));
    expect(replay.code).toBe(status.UNAUTHENTICATED);
    expect(replay.details).toMatch(/replayed/);

    // an expired credential
    const short = issueUser(hub.keystore, { account: "fleet", role: "service", name: "short-c5", expiresInSec: 1 });
    await pollUntil(() => Date.now() / 1_000 >= (short.record.expiresAt ?? 0) + 1.05, { what: "the credential to expire", intervalMs: 50 });
    const expired = new Consume(c, short.creds ?? "").open({ filterSubjects: ["telemetry.c5.>"] });
    expect((await expired.ending())?.code).toBe(status.UNAUTHENTICATED);
    expect((await refused(fetchMsgs(c, short.creds ?? "", { durable: "c5", filterSubjects: ["telemetry.c5.>"] }))).code).toBe(status.UNAUTHENTICATED);
  });

  it("Consume: refuses a first frame other than open, a filter outside the stream, a missing stream and a durable with other filters", async () => {
    const c = client();
    const noOpen = new Consume(c, svc);
    noOpen.credit(1);
    const e1 = await noOpen.ending();
    expect(e1?.code).toBe(status.INVALID_ARGUMENT);
    expect(e1?.details).toMatch(/first frame must be open/);
    const e2 = await new Consume(c, svc).open({ filterSubjects: ["telemetry.c6.>", "nothing.here"] }).ending();
    expect(e2?.code).toBe(status.INVALID_ARGUMENT);
    expect(e2?.details).toMatch(/open\.filter_subjects: nothing\.here is outside stream TELEMETRY/);
    const e3 = await new Consume(c, svc).open({ stream: "NO_SUCH_STREAM", filterSubjects: ["telemetry.c6.>"] }).ending();
    expect(e3?.code).toBe(status.NOT_FOUND);
    const first = new Consume(c, svc).open({ durable: "c6x", filterSubjects: ["telemetry.c6.>"] });
    await first.opening();
    first.call.end();
    await first.ending();
    const e4 = await new Consume(c, svc).open({ durable: "c6x", filterSubjects: ["telemetry.c6.a.>"] }).ending();
    expect(e4?.code).toBe(status.FAILED_PRECONDITION);
    expect(e4?.details).toMatch(/c6x/);
    // an ephemeral consumer is named by JetStream and deleted when the stream ends
    const eph = new Consume(c, svc).open({ filterSubjects: ["telemetry.c6.>"] });
    const name = await eph.opening();
    expect(name).not.toBe("");
    eph.call.end();
    await eph.ending();
    const jsm = await jetstreamManager(nc);
    await pollUntil(async () => (await jsm.consumers.info("TELEMETRY", name).then(() => false, () => true)) || undefined, { what: "the ephemeral consumer deleted" });
  });

  it("Tail delivers from the start position without acks; Fetch and Settle work and Settle refuses stale and foreign tokens", async () => {
    const seqs = await publish(range(5).map((i) => `telemetry.c7.d${i}.temp`));
    const c = client();
    const tail = c.tail({ stream: "TELEMETRY", filterSubjects: ["telemetry.c7.>"], start: { position: { $case: "sequence", value: seqs[1] ?? 0 } } }, authFor(svc, PATHS.tail.path));
    const tailed: TailResponse[] = [];
    let tailError: ServiceError | undefined;
    tail.on("data", (r: TailResponse) => tailed.push(r));
    tail.on("error", (e: ServiceError) => (tailError = e));
    await pollUntil(() => tailed.length >= 4, { what: "four tailed events" });
    expect(tailed.map((r) => r.event?.sequence)).toEqual(seqs.slice(1));
    expect(tailed[0]?.event).toMatchObject({ subject: "telemetry.c7.d1.temp", eventTimeMs: 1_700_000_000_001 });
    const [late] = await publish(["telemetry.c7.d9.temp"]);
    await pollUntil(() => tailed.length >= 5, { what: "the live event" });
    expect(tailed[4]?.event?.sequence).toBe(late);
    tail.cancel();
    await pollUntil(() => tailError !== undefined, { what: "the tail's cancel" });
    expect(tailError?.code).toBe(status.CANCELLED);

    // Fetch: deliveries of a durable; Settle them from other calls
    const f = { durable: "c7", filterSubjects: ["telemetry.c7.>"], ackWaitMs: 30_000 };
    const r1 = await fetchMsgs(c, svc, { ...f, maxMessages: 3, waitMs: 500 });
    expect(r1.deliveries.map(seqOf)).toEqual(seqs.slice(0, 3));
    const [x, y, z] = r1.deliveries;
    if (x === undefined || y === undefined || z === undefined) throw new Error("three deliveries expected");
    expect(x.attempt).toBe(1);
    // another caller cannot settle them
    const intruder = creds("service", "intruder-c7");
    const foreign = await settle(c, intruder, [{ ackToken: x.ackToken, kind: Settlement_Kind.KIND_ACK, delayMs: 0 }]);
    expect(foreign.errors.map((e) => e.code)).toEqual(["FABRIC_ERR_TOKEN_INVALID"]);
    const s1 = await settle(c, svc, [
      { ackToken: x.ackToken, kind: Settlement_Kind.KIND_ACK, delayMs: 0 },
      { ackToken: y.ackToken, kind: Settlement_Kind.KIND_ACK, delayMs: 0 },
      { ackToken: z.ackToken, kind: Settlement_Kind.KIND_NACK, delayMs: 0 },
    ]);
    expect(s1.errors).toEqual([]);
    const s2 = await settle(c, svc, [{ ackToken: x.ackToken, kind: Settlement_Kind.KIND_ACK, delayMs: 0 }]);
    expect(s2.errors.map((e) => [e.ackToken, e.code])).toEqual([[x.ackToken, "FABRIC_ERR_STALE_TOKEN"]]);

    const r2 = await fetchMsgs(c, svc, { ...f, maxMessages: 10, waitMs: 500 });
    expect(r2.deliveries.map(seqOf).sort(byNumber)).toEqual([seqs[2], seqs[3], seqs[4], late]);
    expect(r2.deliveries.find((d) => seqOf(d) === seqOf(z))?.attempt).toBe(2);
    // the first attempt's token of the redelivered message is stale; the new one settles
    const s3 = await settle(c, svc, [{ ackToken: z.ackToken, kind: Settlement_Kind.KIND_ACK, delayMs: 0 }, ...r2.deliveries.map((d) => ({ ackToken: d.ackToken, kind: Settlement_Kind.KIND_ACK, delayMs: 0 }))]);
    expect(s3.errors.map((e) => [e.ackToken, e.code])).toEqual([[z.ackToken, "FABRIC_ERR_STALE_TOKEN"]]);

    // nothing left: waits wait_ms, returns empty, and a deadline shorter than wait_ms is honoured
    let t0 = Date.now();
    expect((await fetchMsgs(c, svc, { ...f, waitMs: 400 })).deliveries).toEqual([]);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(350);
    t0 = Date.now();
    expect((await fetchMsgs(c, svc, { ...f, waitMs: 10_000 }, Date.now() + 1_000)).deliveries).toEqual([]);
    expect(Date.now() - t0).toBeLessThan(1_000);
    expect((await refused(fetchMsgs(c, svc, { ...f, filterSubjects: ["telemetry.c7.d1.>"] }))).code).toBe(status.FAILED_PRECONDITION);
    expect((await refused(fetchMsgs(c, svc, { ...f, stream: "NOPE" }))).code).toBe(status.NOT_FOUND);
  });
});
