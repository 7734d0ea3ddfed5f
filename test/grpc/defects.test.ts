/**
 * Defects an outside client found in the gRPC API (each test failed before its fix): commands delivered again
 * for a repeated idempotency key, GetAggregates waiting out its fetch, Publish reaching $JS/$KV and subjects
 * no data stream stores, over-long subjects closing the gateway's connection, INTERNAL for bad input, command
 * acknowledgements that left WatchCommand hanging, and one code per condition.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { status, type Metadata, type ServiceError } from "@grpc/grpc-js";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { headers as natsHeaders, type Msg, type NatsConnection } from "@nats-io/transport-node";
import { pollUntil } from "../../fabric/core/index.js";
import { COMMAND_ACK_TYPE, COMMAND_ID_HEADER } from "../../fabric/grpc/command-service.js";
import { CommandServiceClient, CommandServiceService, CommandState, type SendCommandRequest, type SendCommandResponse, type WatchCommandResponse } from "../../proto/gen/fabric/v1/command.js";
import { PublishServiceClient, PublishServiceService, type PublishRequest, type PublishResponse } from "../../proto/gen/fabric/v1/publish.js";
import { QueryServiceClient, QueryServiceService } from "../../proto/gen/fabric/v1/query.js";
import { saveDefinition } from "../../streams/index.js";
import { authFor, grpcTestbed, Harness, type GrpcTestbed } from "../harness/index.js";

const h = new Harness();
let service: string;
let nc: NatsConnection;
let client: GrpcTestbed["client"];
afterAll(() => h.dispose());
beforeAll(async () => {
  ({ service, nc, client } = await grpcTestbed(h, "defects"));
});

const refusal = (p: Promise<unknown>): Promise<ServiceError> => p.then(() => Promise.reject(new Error("expected a refusal")), (err: ServiceError) => err);
const codes = (e: ServiceError): [status, string[]] => [e.code, e.metadata.get("fabric-error-code").map(String)];
function unaryCall<Req, Res>(fn: (req: Req, md: Metadata, cb: (e: ServiceError | null, r: Res) => void) => unknown, req: Req, path: string, deadlineMs?: number): Promise<Res> {
  return new Promise((resolve, reject) => {
    const cb = (e: ServiceError | null, r: Res): void => (e === null ? resolve(r) : reject(e));
    if (deadlineMs === undefined) fn(req, authFor(service, path), cb);
    else (fn as unknown as (req: Req, md: Metadata, o: { deadline: number }, cb: (e: ServiceError | null, r: Res) => void) => unknown)(req, authFor(service, path), { deadline: Date.now() + deadlineMs }, cb);
  });
}

describe("SendCommand and WatchCommand", () => {
  const send = (c: CommandServiceClient, req: Partial<SendCommandRequest>): Promise<SendCommandResponse> =>
    unaryCall(c.sendCommand.bind(c), { site: "plant-k", device: "valve-1", name: "open", payload: Buffer.from("50"), idempotencyKey: "", ...req }, CommandServiceService.sendCommand.path);

  it("a repeated idempotency key reaches no one and returns the original command id, also when the repeats race", async () => {
    const got: Msg[] = [];
    const sub = nc.subscribe("cmd.plant-k.valve-1.>", { callback: (_e, m) => void got.push(m) });
    h.defer(() => sub.unsubscribe());
    await nc.flush();
    const c = client(CommandServiceClient);
    const first = await send(c, { idempotencyKey: "open-once" });
    expect(first.duplicate).toBe(false);
    const sequential = [await send(c, { idempotencyKey: "open-once" }), await send(c, { idempotencyKey: "open-once" })];
    const raced = await Promise.all([1, 2, 3, 4].map(() => send(c, { idempotencyKey: "racing" })));
    for (const r of sequential) expect(r).toMatchObject({ commandId: first.commandId, sequence: first.sequence, duplicate: true });
    expect(new Set(raced.map((r) => r.commandId)).size).toBe(1);
    expect(raced.filter((r) => !r.duplicate)).toHaveLength(1);
    // the same key for another device is another command
    const other = await send(c, { device: "valve-2", idempotencyKey: "open-once" });
    expect(other).toMatchObject({ duplicate: false });
    expect(other.commandId).not.toBe(first.commandId);
    // a marker sent last: once it is in, everything sent before it is too
    const marker = await send(c, { name: "marker" });
    await pollUntil(() => got.some((m) => m.headers?.get(COMMAND_ID_HEADER) === marker.commandId) || undefined, { what: "the marker" });
    const ids = got.map((m) => m.headers?.get(COMMAND_ID_HEADER));
    expect(ids.filter((id) => id === first.commandId)).toHaveLength(1);
    expect(ids.filter((id) => id === raced[0]?.commandId)).toHaveLength(1);
    expect(ids).toHaveLength(3);
    // the same key with another payload or name is a conflict, not a duplicate
    expect(codes(await refusal(send(c, { idempotencyKey: "open-once", payload: Buffer.from("90") })))).toEqual([status.FAILED_PRECONDITION, ["FABRIC_ERR_IDEMPOTENCY_CONFLICT"]]);
    expect(codes(await refusal(send(c, { idempotencyKey: "open-once", name: "close" })))).toEqual([status.FAILED_PRECONDITION, ["FABRIC_ERR_IDEMPOTENCY_CONFLICT"]]);
  });

  it("a send whose gateway failed mid-way is taken over: the stored command is found, nothing is sent twice", async () => {
    const c = client(CommandServiceClient);
    const first = await send(c, { device: "valve-3", idempotencyKey: "crashy" });
    // what a gateway that died after storing but before recording leaves: the record without its sequence, failed
    const kv = await new Kvm(nc).open("cmd_keys");
    const keys = await kv.keys("plant-k.valve-3.>");
    const key = (await (async () => { for await (const k of keys) return k; return ""; })());
    const e = await kv.get(key);
    const record = e?.json<Record<string, unknown>>() ?? {};
    await kv.put(key, JSON.stringify({ ...record, sequence: undefined, failed: true }));
    const again = await send(c, { device: "valve-3", idempotencyKey: "crashy" });
    expect(again).toMatchObject({ commandId: first.commandId, sequence: first.sequence, duplicate: true });
    expect((await (await jetstreamManager(nc)).streams.info("COMMANDS", { subjects_filter: "cmd.plant-k.valve-3.>" })).state.subjects?.["cmd.plant-k.valve-3.open"]).toBe(1);
  });

  it("WatchCommand carries any JSON detail and ends a malformed acknowledgement as FAILED with the reason", async () => {
    const c = client(CommandServiceClient);
    const watch = (commandId: string): Promise<WatchCommandResponse[]> =>
      new Promise((resolve, reject) => {
        const states: WatchCommandResponse[] = [];
        const w = c.watchCommand({ commandId }, authFor(service, CommandServiceService.watchCommand.path), { deadline: Date.now() + 10_000 });
        w.on("data", (r: WatchCommandResponse) => states.push(r));
        w.on("end", () => resolve(states));
        w.on("error", reject);
      });
    const ack = async (body: unknown, header?: string): Promise<void> => {
      const hdrs = natsHeaders();
      if (header !== undefined) hdrs.set(COMMAND_ID_HEADER, header);
      await jetstream(nc).publish(`events.plant-k.valve-4.${COMMAND_ACK_TYPE}`, typeof body === "string" ? body : JSON.stringify(body), { headers: hdrs });
    };
    const a = await send(c, { device: "valve-4" });
    await ack({ command: a.commandId, ok: true, detail: { position: 50, unit: "%" } });
    const sa = await watch(a.commandId);
    expect(sa.map((s) => s.state)).toEqual([CommandState.COMMAND_STATE_STORED, CommandState.COMMAND_STATE_ACKED]);
    expect(JSON.parse(sa[1]?.detail.toString() ?? "")).toEqual({ position: 50, unit: "%" });

    const b = await send(c, { device: "valve-4" });
    await ack({ command: b.commandId, ok: "yes", detail: 3 });
    const sb = await watch(b.commandId);
    expect(sb.map((s) => s.state)).toEqual([CommandState.COMMAND_STATE_STORED, CommandState.COMMAND_STATE_FAILED]);
    expect(sb[1]?.error).toMatch(/malformed acknowledgement.*ok/);

    const d = await send(c, { device: "valve-4" });
    await ack("not json at all", d.commandId);
    const sd = await watch(d.commandId);
    expect(sd[1]?.state).toBe(CommandState.COMMAND_STATE_FAILED);
    expect(sd[1]?.error).toMatch(/not JSON/);
    expect(sd[1]?.detail.toString()).toBe("not json at all");
  });
});

describe("Publish", () => {
  const publish = (req: Partial<PublishRequest>): Promise<PublishResponse> => {
    const c = client(PublishServiceClient);
    return unaryCall(c.publish.bind(c), { subject: "telemetry.plant-p.d1.temp", data: Buffer.from('{"value":1,"ts":1}'), headers: {}, idempotencyKey: "", ...req }, PublishServiceService.publish.path);
  };

  it("refuses $-subjects and subjects no data stream stores with INVALID_ARGUMENT; nothing happens", async () => {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: "VICTIM", subjects: ["victim.>"] });
    for (const subject of ["$JS.API.STREAM.DELETE.VICTIM", "$KV.agg_latest.forged.key", "victim.x", "rejected.x", "_INBOX.x", "telemetry.plant-p.d1", "telemetry.Plant.d1.temp"]) {
      const e = await refusal(publish({ subject, data: Buffer.from("{}") }));
      expect(codes(e), subject).toEqual([status.INVALID_ARGUMENT, ["FABRIC_ERR_INVALID_INPUT"]]);
      expect(e.details).toContain("subject");
    }
    expect((await jsm.streams.info("VICTIM")).config.name).toBe("VICTIM");
    expect(await (await new Kvm(nc).open("agg_latest")).get("forged.key")).toBeNull();
    expect(await publish({})).toMatchObject({ stream: "TELEMETRY", duplicate: false });
  });

  it("an over-long subject, a header or idempotency key with CR/LF and a payload over max_payload are INVALID_ARGUMENT at once; the gateway's connection stays up", async () => {
    const t0 = performance.now();
    const cases: Partial<PublishRequest>[] = [
      { subject: `telemetry.plant-p.d1.${"x".repeat(5_000)}` },
      { subject: `events.${"a.".repeat(3_000)}b` },
      { headers: { "X-Note": "a\r\nPUB evil 1\r\n" } },
      { headers: { "Bad Name": "x" } },
      { idempotencyKey: "k\r\n1" },
      { idempotencyKey: "k".repeat(300) },
      { data: Buffer.alloc(2 * 1024 * 1024, 0x61) },
    ];
    for (const req of cases) expect(codes(await refusal(publish(req))), JSON.stringify(req).slice(0, 60)).toEqual([status.INVALID_ARGUMENT, ["FABRIC_ERR_INVALID_INPUT"]]);
    expect(performance.now() - t0).toBeLessThan(2_000);
    // the gateway still publishes for everyone
    expect(await publish({ idempotencyKey: "after-bad-input" })).toMatchObject({ stream: "TELEMETRY" });
  });
});

describe("QueryService", () => {
  it("GetAggregates answers as soon as the range is read (a 1 s deadline works), for an empty range and with a limit; an unknown window is NOT_FOUND everywhere", async () => {
    const base = Math.floor(Date.now() / 10_000) * 10_000 - 3_000_000_000;
    await saveDefinition(nc, { name: "d10", source: { filter: "telemetry.plant-d.>" }, window: { kind: "tumbling", sizeMs: 10_000 }, aggregates: ["count"], outOfOrderMs: 0 });
    const js = jetstream(nc);
    for (const s of [1, 12, 23, 34]) await js.publish("telemetry.plant-d.d1.temp", JSON.stringify({ ts: base + s * 1_000, value: s }));
    const q = client(QueryServiceClient);
    const range = (req: { window?: string; limit?: number; fromMs?: number }): Promise<{ aggregates: { startMs: number }[] }> =>
      unaryCall(q.getAggregates.bind(q), { window: "d10", key: "plant-d.d1.temp", fromMs: base, toMs: 0, limit: 0, ...req }, QueryServiceService.getAggregates.path, 1_000);
    await pollUntil(async () => ((await range({})).aggregates.length >= 3 ? true : undefined), { what: "three closed windows" });
    let t0 = performance.now();
    expect((await range({})).aggregates.map((a) => a.startMs)).toEqual([base, base + 10_000, base + 20_000]);
    expect((await range({ limit: 1 })).aggregates).toHaveLength(1);
    expect((await range({ fromMs: base + 1_000_000 })).aggregates).toEqual([]);
    expect(performance.now() - t0).toBeLessThan(1_500);
    t0 = performance.now();
    expect(codes(await refusal(range({ window: "no-such-window" })))).toEqual([status.NOT_FOUND, ["FABRIC_ERR_NOT_FOUND"]]);
    expect(performance.now() - t0).toBeLessThan(500);
    const latest = await refusal(unaryCall(q.getLatest.bind(q), { window: "no-such-window", key: "plant-d.d1.temp" }, QueryServiceService.getLatest.path));
    expect(codes(latest)).toEqual([status.NOT_FOUND, ["FABRIC_ERR_NOT_FOUND"]]);
    const watched = await new Promise<ServiceError>((resolve) => {
      const w = q.watchAggregates({ window: "no-such-window", key: "" }, authFor(service, QueryServiceService.watchAggregates.path));
      w.on("data", () => undefined);
      w.on("error", resolve);
    });
    expect(codes(watched)).toEqual([status.NOT_FOUND, ["FABRIC_ERR_NOT_FOUND"]]);
    expect(latest.details).toBe(watched.details);
  });
});
