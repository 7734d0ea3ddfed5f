import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Writable } from "node:stream";
import { jetstream, type JetStreamClient } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { createLogger, pollUntil } from "../../fabric/core/index.js";
import { ensureHubStreams } from "../../streams/index.js";
import { startPostgresSink, type PostgresSink } from "../../sink/index.js";
import { Harness } from "../harness/index.js";
import { startPostgres, type TestPostgres } from "../harness/postgres.js";

// The sink into a database with the TimescaleDB extension (`node scripts/setup.mjs --timescaledb`: Debian
// trixie's Apache-licensed build unless FABRIC_TIMESCALEDB_BINDIR names another). Which edition runs is read
// from the database (timescaledb.license): Debian's build is the Apache-licensed edition, whose behaviour is
// checked; the community edition's compression and policies are not (no package of it here).

const h = new Harness();
let nc: NatsConnection;
let js: JetStreamClient;
let db: TestPostgres;
let sink: PostgresSink;
let edition: string;
let logs = "";
const logger = createLogger({ level: "debug", destination: new Writable({ write: (chunk: Buffer, _e, cb) => ((logs += chunk.toString()), cb()) }) });

const OLD = Date.UTC(2024, 0, 31, 23, 59, 0); // old readings, across two daily chunks: past any retention of 30 days
const NOW = Date.now();
const RETENTION_DAYS = 30;
const COMPRESSION_WARNING = "compressAfterDays needs TimescaleDB's community edition";
const TABLES = ["fabric_aggregates", "fabric_events", "fabric_telemetry"];

const startSink = (): Promise<PostgresSink> => startPostgresSink({ nc, logger, url: db.url, name: "ts", retentionDays: RETENTION_DAYS, compressAfterDays: 7 });
const countOf = async (sql: string, params: unknown[] = []): Promise<number> => Number((await db.query<{ n: string }>(sql, params))[0]?.n);
const logLines = (): { level: number; msg: string }[] => logs.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as { level: number; msg: string });
const compressionWarnings = (): number => logLines().filter((l) => l.level === 40 && l.msg.includes(COMPRESSION_WARNING)).length;
const drained = async (s: PostgresSink): Promise<boolean> => (await s.status()).every((st) => st.pending === 0 && st.ackPending === 0 && st.database === "up");

beforeAll(async () => {
  const [server, pgServer] = await Promise.all([h.startServer(), startPostgres(h, { timescaledb: true })]);
  db = pgServer;
  nc = await connect({ servers: server.url });
  h.defer(() => nc.close());
  js = jetstream(nc);
  await ensureHubStreams(nc, await js.jetstreamManager(), 1);
  edition = (await db.query<{ license: string }>("SELECT current_setting('timescaledb.license') AS license"))[0]?.license ?? "";
  sink = await startSink();
  h.defer(() => sink.stop());
});
afterAll(() => h.dispose());

describe("PostgreSQL sink with TimescaleDB", () => {
  it("creates the three tables as hypertables (daily chunks on the time column, the unique key kept) and the positions table as a plain table", async () => {
    expect(["apache", "timescale"]).toContain(edition);
    const dims = await pollUntil(async () => {
      const rows = await db.query<{ t: string; col: string; every: string }>(
        "SELECT d.hypertable_name AS t, d.column_name AS col, d.time_interval::text AS every FROM timescaledb_information.hypertables ht JOIN timescaledb_information.dimensions d USING (hypertable_schema, hypertable_name) ORDER BY 1",
      );
      return rows.length === 3 ? rows : undefined;
    }, { what: "three hypertables" });
    expect(dims).toEqual([
      { t: "fabric_aggregates", col: "window_start", every: "1 day" },
      { t: "fabric_events", col: "time", every: "1 day" },
      { t: "fabric_telemetry", col: "time", every: "1 day" },
    ]);
    const keys = await db.query<{ t: string; def: string }>("SELECT conrelid::regclass::text AS t, pg_get_constraintdef(oid) AS def FROM pg_constraint WHERE conname LIKE 'fabric\\_%\\_key' AND contype = 'u' ORDER BY 1");
    expect(keys).toEqual([
      { t: "fabric_aggregates", def: "UNIQUE (window_name, key, window_start)" },
      { t: "fabric_events", def: 'UNIQUE (id, "time")' },
      { t: "fabric_telemetry", def: 'UNIQUE (stream_seq, "time")' },
    ]);
    await pollUntil(async () => (await db.query("SELECT to_regclass('fabric_sink_positions') AS t"))[0]?.t === "fabric_sink_positions", { what: "the positions table" });
    expect(await countOf("SELECT count(*) AS n FROM timescaledb_information.hypertables WHERE hypertable_name = 'fabric_sink_positions'")).toBe(0);
    expect(await countOf("SELECT count(*) AS n FROM pg_class WHERE relname = 'fabric_sink_positions' AND relkind = 'r'")).toBe(1);
  });

  it("writes telemetry into chunks as on plain PostgreSQL, rejecting rows the database refuses, and a stream read again adds no row", async () => {
    const acks = [];
    for (let i = 0; i < 120; i++) acks.push(await js.publish(`telemetry.plant-a.d${i % 3}.temp`, JSON.stringify({ value: i + 0.5, ts: OLD + i * 1_000, unit: "C" })));
    for (let i = 0; i < 5; i++) await js.publish(`telemetry.plant-b.d${i}.temp`, JSON.stringify({ value: i, ts: NOW }));
    // jsonb refuses \u0000: the batch is written again row by row (savepoints on a hypertable), this row refused
    await js.publish("telemetry.plant-a.bad.nul", JSON.stringify({ value: 1, ts: OLD, note: "a\u0000b" }));
    await pollUntil(async () => (await countOf("SELECT count(*) AS n FROM fabric_telemetry")) === 125 || undefined, { timeoutMs: 20_000, what: "125 telemetry rows" });
    await pollUntil(() => drained(sink), { what: "the sink drained" });
    const [first] = await db.query("SELECT time, site, device, metric, value, extra, stream_seq FROM fabric_telemetry WHERE stream_seq = $1", [acks[0]?.seq]);
    expect(first).toEqual({ time: new Date(OLD), site: "plant-a", device: "d0", metric: "temp", value: 0.5, extra: { unit: "C" }, stream_seq: String(acks[0]?.seq) });
    expect(await countOf("SELECT count(*) AS n FROM fabric_telemetry WHERE device = 'bad'")).toBe(0);
    expect((await sink.status()).find((s) => s.stream === "TELEMETRY")).toMatchObject({ written: 125, rejected: 1 });
    // the rows are in chunks: 2024-01-31, 2024-02-01 and today's
    const chunks = await db.query<{ start: Date }>("SELECT range_start AS start FROM timescaledb_information.chunks WHERE hypertable_name = 'fabric_telemetry' ORDER BY 1");
    const day = (ms: number): number => ms - (ms % 86_400_000);
    expect(chunks.map((c) => c.start.getTime())).toEqual([day(OLD), day(OLD) + 86_400_000, day(NOW)]);

    // a second sink (its own consumer, from the start of TELEMETRY): every row is there already; the COPY meets
    // the unique key on the hypertable, and the merge's ON CONFLICT DO NOTHING drops them all
    const other = await startPostgresSink({ nc, logger: createLogger({ level: "silent" }), url: db.url, name: "again", streams: ["telemetry"] });
    try {
      await pollUntil(async () => (await other.status())[0]?.written === 125 && (await drained(other)), { what: "the second sink to catch up" });
    } finally {
      await other.stop();
    }
    expect(await countOf("SELECT count(*) AS n FROM fabric_telemetry")).toBe(125);
    expect(await countOf("SELECT count(DISTINCT stream_seq) AS n FROM fabric_telemetry")).toBe(125);
  });

  it("upserts window results on (window, key, start) in the hypertable, keeping the highest revision", async () => {
    const base = { window: "temp-1m", key: "plant-a.d1.temp", start: OLD, end: OLD + 60_000 };
    const subject = "agg.temp-1m.plant-a.d1.temp";
    await js.publish(subject, JSON.stringify({ ...base, revision: 0, kind: "early", count: 1, avg: 1 }));
    await js.publish(subject, JSON.stringify({ ...base, revision: 0, kind: "final", count: 2, avg: 2 }));
    await js.publish(subject, JSON.stringify({ ...base, revision: 1, kind: "revision", count: 3, avg: 3, p99: 4 }));
    await js.publish(subject, JSON.stringify({ ...base, start: OLD + 60_000, end: OLD + 120_000, revision: 0, kind: "final", count: 0, empty: true }));
    await pollUntil(async () => (await countOf("SELECT count(*) AS n FROM fabric_aggregates")) === 2 || undefined, { what: "2 window rows" });
    // a stale result arriving later never replaces a later revision
    await js.publish(subject, JSON.stringify({ ...base, revision: 0, kind: "final", count: 9, avg: 9 }));
    await pollUntil(() => drained(sink), { what: "aggregates drained" });
    const rows = await db.query("SELECT window_name, key, key_parts, site, device, metric, window_start, window_end, revision, kind, count, empty, aggregates FROM fabric_aggregates ORDER BY window_start");
    expect(rows).toEqual([
      { window_name: "temp-1m", key: "plant-a.d1.temp", key_parts: ["plant-a", "d1", "temp"], site: "plant-a", device: "d1", metric: "temp", window_start: new Date(OLD), window_end: new Date(OLD + 60_000), revision: 1, kind: "revision", count: "3", empty: false, aggregates: { avg: 3, p99: 4 } },
      { window_name: "temp-1m", key: "plant-a.d1.temp", key_parts: ["plant-a", "d1", "temp"], site: "plant-a", device: "d1", metric: "temp", window_start: new Date(OLD + 60_000), window_end: new Date(OLD + 120_000), revision: 0, kind: "final", count: "0", empty: true, aggregates: {} },
    ]);
  });

  it("writes events once by Nats-Msg-Id, with the payload as jsonb", async () => {
    await js.publish("events.plant-a.door1.opened", JSON.stringify({ ts: OLD, by: "alice" }), { msgID: "door1-1" });
    await js.publish("events.plant-a.door1.opened", JSON.stringify({ ts: OLD, by: "alice" }), { msgID: "door1-1" }); // a duplicate JetStream drops
    const noId = await js.publish("events.plant-a.pump.alarm", JSON.stringify({ level: 3, ts: NOW }));
    await pollUntil(async () => (await countOf("SELECT count(*) AS n FROM fabric_events")) === 2 || undefined, { what: "2 event rows" });
    const rows = await db.query("SELECT time, site, device, type, id, payload, stream_seq FROM fabric_events ORDER BY stream_seq");
    expect(rows[0]).toMatchObject({ time: new Date(OLD), site: "plant-a", device: "door1", type: "opened", id: "door1-1", payload: { ts: OLD, by: "alice" } });
    expect(rows[1]).toEqual({ time: new Date(NOW), site: "plant-a", device: "pump", type: "alarm", id: `seq:${noId.seq}`, payload: { level: 3, ts: NOW }, stream_seq: String(noId.seq) });
  });

  it("apache edition (timescaledb.license = apache): no compression, one warning saying why, no policies, and the sink's retention job drops the old chunks with drop_chunks", async () => {
    // what `setup --timescaledb` installs (Debian's build); the community edition's policies are not tested here
    expect(edition).toBe("apache");
    await pollUntil(() => compressionWarnings() === 1 || undefined, { what: "the compression warning" });
    expect(logLines().filter((l) => l.level >= 40 && /cannot claim|failed/.test(l.msg))).toEqual([]);
    const compressed = await db.query<{ t: string; enabled: boolean }>("SELECT hypertable_name AS t, compression_enabled AS enabled FROM timescaledb_information.hypertables ORDER BY 1");
    expect(compressed).toEqual(TABLES.map((t) => ({ t, enabled: false })));
    expect(await countOf("SELECT count(*) AS n FROM timescaledb_information.jobs WHERE hypertable_name IS NOT NULL")).toBe(0);

    const old = await db.query<{ chunk: string }>(
      `SELECT chunk_schema || '.' || chunk_name AS chunk FROM timescaledb_information.chunks WHERE range_end <= now() - interval '${RETENTION_DAYS} days' ORDER BY 1`,
    );
    expect(old.length).toBe(5); // telemetry's and aggregates' two days (2024-01-31, 2024-02-01), events' one
    const dropped = await sink.runRetention();
    expect(dropped.sort()).toEqual(old.map((c) => c.chunk));
    expect(await countOf("SELECT count(*) AS n FROM fabric_telemetry WHERE time < now() - interval '1 day'")).toBe(0);
    expect(await countOf("SELECT count(*) AS n FROM fabric_telemetry WHERE site = 'plant-b'")).toBe(5); // today's kept
    expect(await countOf("SELECT count(*) AS n FROM fabric_aggregates")).toBe(0);
    expect(await db.query("SELECT id FROM fabric_events")).toEqual([{ id: expect.stringMatching(/^seq:\d+$/) as unknown }]);
    expect(await sink.runRetention()).toEqual([]);
    // a late reading for a dropped day: its chunk is made again
    await js.publish("telemetry.plant-a.d1.temp", JSON.stringify({ value: 1, ts: OLD }));
    await pollUntil(async () => (await countOf("SELECT count(*) AS n FROM fabric_telemetry WHERE time = $1", [new Date(OLD)])) === 1 || undefined, { what: "the late reading" });
  });


  it("starts again on the tables it made (create_hypertable if_not_exists) and goes on from its position", async () => {
    const before = await countOf("SELECT count(*) AS n FROM fabric_telemetry");
    await sink.stop();
    sink = await startSink();
    await js.publish("telemetry.plant-c.d1.temp", JSON.stringify({ value: 42, ts: NOW }));
    await pollUntil(async () => (await countOf("SELECT count(*) AS n FROM fabric_telemetry")) === before + 1 || undefined, { what: "the reading after the restart" });
    await pollUntil(() => drained(sink), { what: "the restarted sink drained" });
    const status = await sink.status();
    expect(status.map((s) => ({ stream: s.stream, role: s.role, lastError: s.lastError }))).toEqual(
      ["TELEMETRY", "AGGREGATES", "EVENTS"].map((stream) => ({ stream, role: "active", lastError: undefined })),
    );
    expect(status.find((s) => s.stream === "TELEMETRY")?.written).toBe(1); // only the new reading: it went on from its position
    expect(await countOf("SELECT count(*) AS n FROM timescaledb_information.hypertables")).toBe(3);
    expect(logLines().filter((l) => l.level >= 40 && /cannot claim|failed/.test(l.msg))).toEqual([]);
  });
});
