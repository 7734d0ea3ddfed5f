import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NatsConnection } from "@nats-io/transport-node";
import pg from "pg";
import { pollUntil, renderMetrics } from "../../fabric/core/index.js";
import { startPostgresSink } from "../../sink/index.js";
import { Harness, testLogger } from "../harness/index.js";
import { startPostgres, type TestPostgres } from "../harness/postgres.js";
import { publishReadings, rowCount, sinkTestHub, tableSummary } from "./sink-helpers.js";

const N = 30_000;
const h = new Harness();
let nc: NatsConnection;
let db: TestPostgres;

beforeAll(async () => {
  [{ nc }, db] = await Promise.all([sinkTestHub(h), startPostgres(h)]);
});
afterAll(() => h.dispose());

describe("PostgreSQL sink: database outage", () => {
  it("PostgreSQL SIGKILLed during load: the sink holds the backlog, retries, and drains when it is back", async () => {
    const sink = await startPostgresSink({ nc, logger: testLogger(), url: db.url, streams: ["telemetry"], retryMaxMs: 500 });
    h.defer(() => sink.stop());
    await publishReadings(nc, N / 2);
    await pollUntil(async () => (await rowCount(db)) >= 5_000, { timeoutMs: 30_000, what: "5000 rows" });
    await db.kill();
    // the rest while the database is down
    await publishReadings(nc, N / 2, Date.UTC(2024, 5, 2));
    // down: nothing acknowledged that is not committed, the backlog waits in the stream
    // (read until two reads agree: while the sink gives up its claim its consumer is being set up again)
    let previous = -1;
    const down = await pollUntil(async () => {
      const [s] = await sink.status();
      // what is not committed waits: not delivered yet (pending), or delivered and not acknowledged (ackPending)
      const waiting = (s?.pending ?? 0) + (s?.ackPending ?? 0);
      const steady = waiting === previous;
      previous = waiting;
      return s?.database === "down" && waiting > 0 && steady ? s : undefined;
    }, { timeoutMs: 20_000, intervalMs: 300, what: "the sink to see the database down" });
    expect(down.lastError).toBeDefined();
    expect(down.lastError).not.toContain(db.password);
    const pendingWhileDown = (down.pending ?? 0) + (down.ackPending ?? 0);
    await db.restart();
    const before = await rowCount(db);
    // nothing lost while it was down: what was committed plus what waited covers the stream. (Counted after the
    // restart, when the sink may already be writing again: the count can only grow, so no upper bound here; the
    // exact equality of table and stream below rules out duplicates.)
    expect(before + pendingWhileDown).toBeGreaterThanOrEqual(N);
    await pollUntil(async () => (await rowCount(db)) >= N, { timeoutMs: 40_000, intervalMs: 100, what: `all ${N} rows after the restart` });
    expect(await tableSummary(db)).toEqual({ rows: N, distinct: N, min: 1, max: N });
    const [after] = await pollUntil(async () => {
      const s = await sink.status();
      return s[0]?.pending === 0 && s[0].ackPending === 0 ? s : undefined;
    }, { what: "the consumer drained" });
    expect(after).toMatchObject({ database: "up", lastError: undefined, rejected: 0 });
    const metrics = (await renderMetrics()).body;
    expect(metrics).toMatch(/fabric_sink_batches_total\{sink="postgres",stream="TELEMETRY",result="failed"\} [1-9]/);
    expect(metrics).toContain('fabric_sink_database_up{sink="postgres"} 1');
  });

  it("a database that stalls (the table locked): the sink holds at most max_ack_pending, the stream keeps the rest, all is written once it moves", async () => {
    const prefix = "slow_";
    const sink = await startPostgresSink({ nc, logger: testLogger(), url: db.url, name: "slow", streams: ["telemetry"], tablePrefix: prefix, maxBatch: 500 });
    h.defer(() => sink.stop());
    const streamBefore = await pollUntil(async () => {
      const [s] = await sink.status();
      return s?.role === "active" && s.pending === 0 && s.ackPending === 0 ? s : undefined;
    }, { timeoutMs: 30_000, what: "the sink caught up with the stream" });
    expect(streamBefore.database).toBe("up");
    const table = `${prefix}telemetry`;
    const before = Number((await db.query<{ n: string }>(`SELECT count(*) AS n FROM ${table}`))[0]?.n);

    // another session holds the table: every COPY waits
    const locker = new pg.Client({ connectionString: db.url });
    await locker.connect();
    h.defer(() => locker.end().catch(() => undefined));
    await locker.query("BEGIN");
    await locker.query(`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
    const more = 10_000;
    await publishReadings(nc, more, Date.UTC(2024, 5, 3));
    const stalled = await pollUntil(async () => {
      const [s] = await sink.status();
      return s !== undefined && (s.pending ?? 0) > 0 && (s.ackPending ?? 0) > 0 ? s : undefined;
    }, { what: "the sink stalled with a backlog" });
    // one batch being written and three more held, at most: the server stops delivering there
    expect(stalled.ackPending).toBeLessThanOrEqual(4 * 500);
    expect((stalled.pending ?? 0) + (stalled.ackPending ?? 0)).toBe(more);
    await locker.query("COMMIT");
    await pollUntil(async () => Number((await db.query<{ n: string }>(`SELECT count(*) AS n FROM ${table}`))[0]?.n) === before + more || undefined, { timeoutMs: 30_000, what: "the backlog written" });
    const [dup] = await db.query<{ n: string }>(`SELECT count(*) - count(DISTINCT stream_seq) AS n FROM ${table}`);
    expect(dup?.n).toBe("0");
  });
});
