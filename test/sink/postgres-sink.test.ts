import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Writable } from "node:stream";
import { gzipSync } from "node:zlib";
import { jetstream, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { connect, headers as natsHeaders, type NatsConnection } from "@nats-io/transport-node";
import { CONTENT_ENCODING_HEADER, createLogger, pollUntil, renderMetrics } from "../../fabric/core/index.js";
import { ensureHubStreams, REJECT_REASON_HEADER } from "../../streams/index.js";
import { startPostgresSink, type PostgresSink } from "../../sink/index.js";
import { Harness } from "../harness/index.js";
import { startPostgres, type TestPostgres } from "../harness/postgres.js";

const h = new Harness();
let nc: NatsConnection;
let js: JetStreamClient;
let jsm: JetStreamManager;
let db: TestPostgres;
let sink: PostgresSink;
let logs = "";

const T0 = Date.UTC(2024, 0, 31, 23, 59, 0); // a batch across two daily (and monthly) partitions

beforeAll(async () => {
  const [server, pgServer] = await Promise.all([h.startServer(), startPostgres(h)]);
  db = pgServer;
  nc = await connect({ servers: server.url });
  h.defer(() => nc.close());
  js = jetstream(nc);
  jsm = await js.jetstreamManager();
  await ensureHubStreams(nc, jsm, 1);
  const logger = createLogger({ level: "debug", destination: new Writable({ write: (chunk: Buffer, _e, cb) => ((logs += chunk.toString()), cb()) }) });
  sink = await startPostgresSink({ nc, logger, url: db.url, name: "test", retentionDays: 30 });
  h.defer(() => sink.stop());
});
afterAll(() => h.dispose());

async function rejectedOf(subject: string): Promise<{ reason: string; data: string } | undefined> {
  const m = await jsm.streams.getMessage("REJECTED", { last_by_subj: `rejected.${subject}` }).catch(() => null);
  return m === null ? undefined : { reason: m.header?.get(REJECT_REASON_HEADER) ?? "", data: m.string() };
}

describe("PostgreSQL sink", () => {
  it("writes telemetry rows with their columns, across partitions, and rejects bad payloads and rows the database refuses", async () => {
    const acks = [];
    for (let i = 0; i < 120; i++) acks.push(await js.publish(`telemetry.plant-a.d${i % 3}.temp`, JSON.stringify({ value: i + 0.5, ts: T0 + i * 1_000, unit: "C" })));
    await js.publish("telemetry.plant-a.bad.notjson", "not json");
    await js.publish("telemetry.plant-a.bad.novalue", JSON.stringify({ ts: T0 }));
    // valid JSON, but PostgreSQL's jsonb refuses \u0000 in text: the database refuses this row only
    await js.publish("telemetry.plant-a.bad.nul", JSON.stringify({ value: 1, ts: T0, note: "a\u0000b" }));
    await js.publish("telemetry.plant-a.d9.last", JSON.stringify({ value: 7, ts: T0 + 1 }));
    // a compressed payload (Content-Encoding: gzip, as a NATS publisher may send): read inflated
    const zipped = natsHeaders();
    zipped.set(CONTENT_ENCODING_HEADER, "gzip");
    await js.publish("telemetry.plant-a.dz.zip", gzipSync(JSON.stringify({ value: 3.25, ts: T0 + 2 })), { headers: zipped });

    await pollUntil(async () => (await db.query<{ n: string }>("SELECT count(*) AS n FROM fabric_telemetry"))[0]?.n === "122", { timeoutMs: 20_000, what: "122 telemetry rows" });
    expect(await db.query("SELECT value FROM fabric_telemetry WHERE device = 'dz'")).toEqual([{ value: 3.25 }]);
    const [first] = await db.query("SELECT time, site, device, metric, value, extra, stream_seq FROM fabric_telemetry WHERE stream_seq = $1", [acks[0]?.seq]);
    expect(first).toEqual({ time: new Date(T0), site: "plant-a", device: "d0", metric: "temp", value: 0.5, extra: { unit: "C" }, stream_seq: String(acks[0]?.seq) });
    const last = await db.query("SELECT value, extra FROM fabric_telemetry WHERE device = 'd9'");
    expect(last).toEqual([{ value: 7, extra: null }]);
    // daily partitions, created as rows came
    const parts = await db.query<{ p: string }>("SELECT c.relname AS p FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'fabric_telemetry'::regclass ORDER BY 1");
    expect(parts.map((r) => r.p)).toEqual(["fabric_telemetry_p20240131", "fabric_telemetry_p20240201"]);

    const notJson = await pollUntil(() => rejectedOf("telemetry.plant-a.bad.notjson"), { what: "REJECTED not json" });
    expect(notJson).toEqual({ reason: "sink: telemetry payload is not a JSON object", data: "not json" });
    expect((await rejectedOf("telemetry.plant-a.bad.novalue"))?.reason).toBe("sink: telemetry payload has no numeric value");
    const refused = await pollUntil(() => rejectedOf("telemetry.plant-a.bad.nul"), { what: "REJECTED refused row" });
    expect(refused.reason).toMatch(/^sink: postgres refused the row: .*unsupported Unicode escape sequence.*\(SQLSTATE 22P05\)/);
    expect(await db.query("SELECT 1 FROM fabric_telemetry WHERE device = 'bad'")).toEqual([]);

    const [status] = await pollUntil(async () => {
      const s = await sink.status();
      return s[0]?.pending === 0 && s[0].ackPending === 0 ? s : undefined;
    }, { what: "the consumer drained" });
    expect(status).toMatchObject({ stream: "TELEMETRY", consumer: "sink-test-telemetry", written: 122, rejected: 3, database: "up" });
    expect(logs).not.toContain(db.password);
  });

  it("upserts window results on (window, key, start), keeping the highest revision", async () => {
    const base = { window: "temp-1m", key: "plant-a.d1.temp", start: T0, end: T0 + 60_000 };
    await js.publish("agg.temp-1m.plant-a.d1.temp", JSON.stringify({ ...base, revision: 0, kind: "early", count: 1, avg: 1 }));
    await js.publish("agg.temp-1m.plant-a.d1.temp", JSON.stringify({ ...base, revision: 0, kind: "final", count: 2, avg: 2 }));
    await js.publish("agg.temp-1m.plant-a.d1.temp", JSON.stringify({ ...base, revision: 1, kind: "revision", count: 3, avg: 3, p99: 4 }));
    await js.publish("agg.temp-1m.plant-a.d1.temp", JSON.stringify({ ...base, start: T0 + 60_000, end: T0 + 120_000, revision: 0, kind: "final", count: 0, empty: true }));
    await pollUntil(async () => (await db.query("SELECT 1 FROM fabric_aggregates")).length === 2, { what: "2 window rows" });
    // a stale result arriving later (an early firing re-published) never replaces a later revision
    await js.publish("agg.temp-1m.plant-a.d1.temp", JSON.stringify({ ...base, revision: 0, kind: "final", count: 9, avg: 9 }));
    await pollUntil(async () => (await sink.status()).find((s) => s.stream === "AGGREGATES")?.pending === 0 && (await sink.status()).find((s) => s.stream === "AGGREGATES")?.ackPending === 0, { what: "aggregates drained" });
    const rows = await db.query("SELECT window_name, key, key_parts, site, device, metric, window_start, window_end, revision, kind, count, empty, aggregates FROM fabric_aggregates ORDER BY window_start");
    expect(rows).toEqual([
      { window_name: "temp-1m", key: "plant-a.d1.temp", key_parts: ["plant-a", "d1", "temp"], site: "plant-a", device: "d1", metric: "temp", window_start: new Date(T0), window_end: new Date(T0 + 60_000), revision: 1, kind: "revision", count: "3", empty: false, aggregates: { avg: 3, p99: 4 } },
      { window_name: "temp-1m", key: "plant-a.d1.temp", key_parts: ["plant-a", "d1", "temp"], site: "plant-a", device: "d1", metric: "temp", window_start: new Date(T0 + 60_000), window_end: new Date(T0 + 120_000), revision: 0, kind: "final", count: "0", empty: true, aggregates: {} },
    ]);
  });

  it("writes events once by Nats-Msg-Id, with the payload as jsonb", async () => {
    const hdr = natsHeaders();
    await js.publish("events.plant-a.door1.opened", JSON.stringify({ ts: T0, by: "alice" }), { msgID: "door1-1" });
    await js.publish("events.plant-a.door1.opened", JSON.stringify({ ts: T0, by: "alice" }), { msgID: "door1-1" }); // a duplicate JetStream drops
    const noId = await js.publish("events.plant-a.pump.alarm", JSON.stringify({ level: 3 }), { headers: hdr });
    await js.publish("events.plant-a.pump.bad", "{oops");
    await pollUntil(async () => (await db.query("SELECT 1 FROM fabric_events")).length === 2, { what: "2 event rows" });
    const rows = await db.query<{ time: Date; id: string; site: string; device: string; type: string; payload: unknown; stream_seq: string }>("SELECT time, site, device, type, id, payload, stream_seq FROM fabric_events ORDER BY stream_seq");
    expect(rows[0]).toMatchObject({ time: new Date(T0), site: "plant-a", device: "door1", type: "opened", id: "door1-1", payload: { ts: T0, by: "alice" } });
    expect(rows[1]).toMatchObject({ site: "plant-a", device: "pump", type: "alarm", id: `seq:${noId.seq}`, payload: { level: 3 }, stream_seq: String(noId.seq) });
    expect(Math.abs((rows[1]?.time.getTime() ?? 0) - Date.now())).toBeLessThan(60_000); // the stream's timestamp
    expect((await pollUntil(() => rejectedOf("events.plant-a.pump.bad"), { what: "rejected event" })).reason).toBe("sink: event payload is not JSON");
  });

  it("the retention job drops partitions older than --retention-days", async () => {
    const dropped = await sink.runRetention();
    expect(dropped.sort()).toEqual(["fabric_aggregates_p20240131", "fabric_aggregates_p20240201", "fabric_events_p20240131", "fabric_telemetry_p20240131", "fabric_telemetry_p20240201"]);
    expect(await db.query("SELECT 1 FROM fabric_telemetry")).toEqual([]);
    // a late reading for a dropped day: its partition is created again
    await js.publish("telemetry.plant-a.d1.temp", JSON.stringify({ value: 1, ts: T0 }));
    await pollUntil(async () => (await db.query("SELECT 1 FROM fabric_telemetry")).length === 1, { what: "the late reading" });
  });

  it("a whole stream read again (its consumer made anew) adds no row: the batch COPY meets the rows already there and is merged instead", async () => {
    const t = Date.UTC(2024, 2, 1);
    for (let i = 0; i < 50; i++) await js.publish("events.plant-r.d1.door", JSON.stringify({ ts: t + i }), { msgID: `again-${i}` });
    const countOf = async (): Promise<number> => Number((await db.query<{ n: string }>("SELECT count(*) AS n FROM fabric_events WHERE site = 'plant-r'"))[0]?.n ?? 0);
    await pollUntil(async () => (await countOf()) === 50 || undefined, { what: "the 50 events" });
    // (rows of events an earlier test's retention run dropped come back: the second sink reads all of EVENTS)
    const twice = async (): Promise<number> => Number((await db.query<{ n: string }>("SELECT count(*) - count(DISTINCT id) AS n FROM fabric_events"))[0]?.n ?? -1);
    const other = await startPostgresSink({ nc, logger: createLogger({ level: "silent" }), url: db.url, name: "again", streams: ["events"] });
    h.defer(() => other.stop());
    // a second sink (its own consumer, from the start of EVENTS) into the same tables: every row is there already
    await pollUntil(async () => ((await other.status()).every((st) => st.pending === 0 && st.ackPending === 0) ? true : undefined), { what: "the second sink to catch up" });
    expect(await countOf()).toBe(50);
    expect(await twice()).toBe(0);
    // the rows already there are counted as duplicates
    const metrics = (await renderMetrics()).body;
    expect(Number(/fabric_sink_rows_total\{sink="again",table="fabric_events",result="duplicate"\} (\d+)/.exec(metrics)?.[1])).toBeGreaterThanOrEqual(50);
  });
});
