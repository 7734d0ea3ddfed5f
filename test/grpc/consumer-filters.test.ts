import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { status, type ServiceError } from "@grpc/grpc-js";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { ConsumerServiceClient, type TailResponse } from "../../proto/gen/fabric/v1/consumer.js";
import { isFabricError, pollUntil } from "../../fabric/core/index.js";
import { intersectSubjects, wholeStreamFilters, withoutContained } from "../../fabric/grpc/consumer-filters.js";

import { addRole, issueUser, pushAccounts } from "../../identity/index.js";
import { authFor, grpcClient, grpcTestbed, Harness, type TestHub } from "../harness/index.js";
import { Consume, fetchMsgs, PATHS, refused, seqOf } from "./consumer-client.js";

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return isFabricError(err) ? err.code : "not a fabric error";
  }
  return undefined;
}

describe("consumer filters: subject algebra", () => {
  it("intersects patterns token-wise", () => {
    expect(intersectSubjects("telemetry.>", "telemetry.plant-a.>")).toBe("telemetry.plant-a.>");
    expect(intersectSubjects("telemetry.*.*.*", "telemetry.plant-a.>")).toBe("telemetry.plant-a.*.*");
    expect(intersectSubjects("telemetry.*.*.*", ">")).toBe("telemetry.*.*.*");
    expect(intersectSubjects("a.*.c", "a.b.*")).toBe("a.b.c");
    expect(intersectSubjects("a.>", "a.>")).toBe("a.>");
    expect(intersectSubjects("a.>", "a")).toBeUndefined();
    expect(intersectSubjects("a.*", "a.b.c")).toBeUndefined();
    expect(intersectSubjects("telemetry.>", "nothing.here")).toBeUndefined();
    expect(intersectSubjects("telemetry.>", "_INBOX.>")).toBeUndefined();
    expect(withoutContained(["a.>", "a.b.c", "b.*", "b.*", "b.x"])).toEqual(["a.>", "b.*"]);
  });

  it("the whole stream within permissions: intersections, denied parts dropped or refused, nothing readable refused", () => {
    const who = "svc";
    expect(wholeStreamFilters({ sub: { allow: [">"] } }, ["telemetry.>"], "T", "f", who)).toEqual(["telemetry.>"]);
    expect(wholeStreamFilters({}, ["telemetry.>"], "T", "f", who)).toEqual(["telemetry.>"]);
    expect(wholeStreamFilters({ sub: { allow: ["telemetry.plant-a.>", "telemetry.plant-a.d1.temp", "agg.>", "_INBOX.>"] } }, ["telemetry.>"], "T", "f", who)).toEqual(["telemetry.plant-a.>"]);
    // a deny rule that covers a whole piece drops it; one that covers part of it cannot be said with filters
    expect(wholeStreamFilters({ sub: { allow: ["telemetry.a.>", "telemetry.b.>"], deny: ["telemetry.b.>"] } }, ["telemetry.>"], "T", "f", who)).toEqual(["telemetry.a.>"]);
    expect(codeOf(() => wholeStreamFilters({ sub: { allow: [">"], deny: ["telemetry.secret.>"] } }, ["telemetry.>"], "T", "f", who))).toBe("FABRIC_ERR_INVALID_INPUT");
    expect(codeOf(() => wholeStreamFilters({ sub: { allow: ["agg.>"] } }, ["telemetry.>"], "T", "f", who))).toBe("FABRIC_ERR_PERMISSION_DENIED");
    // pieces that overlap without one containing the other: JetStream would refuse them
    expect(codeOf(() => wholeStreamFilters({ sub: { allow: ["a.*.c", "a.b.*"] } }, ["a.>"], "T", "f", who))).toBe("FABRIC_ERR_INVALID_INPUT");
  });
});

const h = new Harness();
let hub: TestHub;
let nc: NatsConnection;
let svc: string;
afterAll(() => h.dispose());
beforeAll(async () => {
  ({ hub, nc, service: svc } = await grpcTestbed(h, "filters-svc", { windows: false }));
});

function client(): ConsumerServiceClient {
  const c = grpcClient(ConsumerServiceClient, hub.grpc ?? 0);
  h.defer(() => c.close());
  return c;
}

function tailError(c: ConsumerServiceClient, who: string, filterSubjects: string[]): Promise<ServiceError> {
  const call = c.tail({ stream: "TELEMETRY", filterSubjects }, authFor(who, PATHS.tail.path));
  call.on("data", () => undefined);
  return new Promise((resolve) => call.on("error", resolve));
}

describe("consumer filters over the gateway", () => {
  it("a filter the stream can never hold is INVALID_ARGUMENT for Consume, Tail and Fetch, and no consumer is created", async () => {
    const c = client();
    const jsm = await jetstreamManager(nc);
    const before = (await jsm.streams.info("TELEMETRY")).state.consumer_count;
    const consume = await new Consume(c, svc).open({ durable: "f1", filterSubjects: ["nothing.here"] }).ending();
    expect(consume?.code).toBe(status.INVALID_ARGUMENT);
    expect(consume?.details).toMatch(/nothing\.here is outside stream TELEMETRY, which holds telemetry\.>/);
    const tail = await tailError(c, svc, ["telemetry.f1.>", "nothing.here"]);
    expect(tail.code).toBe(status.INVALID_ARGUMENT);
    expect(tail.details).toMatch(/nothing\.here is outside stream TELEMETRY/);
    const fetch = await refused(fetchMsgs(c, svc, { durable: "f1", filterSubjects: ["nothing.here"], waitMs: 100 }));
    expect(fetch.code).toBe(status.INVALID_ARGUMENT);
    expect(fetch.details).toMatch(/nothing\.here is outside stream TELEMETRY/);
    expect(fetch.metadata.get("fabric-error-code")).toEqual(["FABRIC_ERR_INVALID_INPUT"]);
    expect((await jsm.streams.info("TELEMETRY")).state.consumer_count).toBe(before);
    await expect(jsm.consumers.info("TELEMETRY", "f1")).rejects.toThrow();
  });

  it("no filters: the whole stream for the service role, the readable part for a narrower role, PERMISSION_DENIED for none", async () => {
    const js = jetstream(nc);
    const a = (await js.publish("telemetry.plant-f.d1.temp", "{}")).seq;
    const b = (await js.publish("telemetry.plant-g.d1.temp", "{}")).seq;
    const c = client();

    // the service role: the whole stream (both messages, from the start)
    const whole = await fetchMsgs(c, svc, { durable: "f2-all", maxMessages: 1_000, waitMs: 200 });
    const seqs = whole.deliveries.map(seqOf);
    expect(seqs).toContain(a);
    expect(seqs).toContain(b);
    const jsm = await jetstreamManager(nc);
    expect((await jsm.consumers.info("TELEMETRY", "f2-all")).config.filter_subject).toBe("telemetry.>");
    const all = new Consume(c, svc).open({ durable: "f2-consume" });
    expect(await all.opening()).toBe("f2-consume");
    all.call.end();
    await all.ending();

    // a role that may read plant-f only (and aggregates, and its inboxes): exactly that part of TELEMETRY
    addRole(hub.keystore, "fleet", { name: "plant-f-reader", sub: ["telemetry.plant-f.>", "agg.>", "_INBOX.>"], pub: ["_INBOX.>"] });
    addRole(hub.keystore, "fleet", { name: "agg-reader", sub: ["agg.>", "_INBOX.>"], pub: ["_INBOX.>"] });
    await pushAccounts(hub.keystore, { servers: hub.urls, accounts: ["fleet"] });
    const reader = issueUser(hub.keystore, { account: "fleet", role: "plant-f-reader", name: "f-reader" }).creds ?? "";
    const aggs = issueUser(hub.keystore, { account: "fleet", role: "agg-reader", name: "agg-reader" }).creds ?? "";
    const narrow = await pollUntil(() => fetchMsgs(c, reader, { durable: "f2-narrow", maxMessages: 1_000, waitMs: 200 }).catch(() => undefined), { what: "the new role at the gateway", intervalMs: 200 });
    expect(narrow.deliveries.map(seqOf)).toContain(a);
    expect(narrow.deliveries.every((d) => d.event?.subject.startsWith("telemetry.plant-f.") === true)).toBe(true);
    expect((await jsm.consumers.info("TELEMETRY", "f2-narrow")).config.filter_subject).toBe("telemetry.plant-f.>");

    const tailed: TailResponse[] = [];
    const tail = c.tail({ stream: "TELEMETRY", filterSubjects: [] }, authFor(reader, PATHS.tail.path));
    tail.on("data", (r: TailResponse) => tailed.push(r));
    tail.on("error", () => undefined);
    await pollUntil(() => tailed.some((r) => r.event?.sequence === a), { what: "the tail of plant-f" });
    tail.cancel();
    expect(tailed.map((r) => r.event?.sequence)).not.toContain(b);

    const consume = new Consume(c, reader).open({});
    await consume.opening();
    consume.credit(1_000);
    await pollUntil(() => consume.received().some((d) => seqOf(d) === a), { what: "plant-f through Consume" });
    expect(consume.received().map(seqOf)).not.toContain(b);
    consume.call.end();
    await consume.ending();

    // a role that may read nothing of TELEMETRY
    const none = await new Consume(c, aggs).open({}).ending();
    expect(none?.code).toBe(status.PERMISSION_DENIED);
    expect(none?.details).toMatch(/may read nothing of stream TELEMETRY/);
    expect((await tailError(c, aggs, [])).code).toBe(status.PERMISSION_DENIED);
    expect((await refused(fetchMsgs(c, aggs, { durable: "f2-none", waitMs: 100 }))).code).toBe(status.PERMISSION_DENIED);
  });
});
