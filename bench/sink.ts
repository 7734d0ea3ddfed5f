// The PostgreSQL sink: rows/s from TELEMETRY into PostgreSQL against `psql \copy` of the same rows from a file
// into a table of the same shape (the database's own bulk-load path here: the physical limit), and the lag from
// publish to committed row at 10 000 msg/s. One run, one machine, the same database.
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { JetStreamPublisher } from "../fabric/core/index.js";
import { issueUser } from "../identity/index.js";
import { startPostgresSink } from "../sink/index.js";
import { connectAs, startPostgres, startTestHub, testLogger, type Harness, type TestPostgres } from "../test/harness/index.js";
import { publishReadings } from "../test/sink/sink-helpers.js";
import { fmt, percentile } from "./lib.js";

const ROWS = 200_000;
const LAG_RATE = 10_000; // msg/s
const LAG_SECONDS = 10;
const POLL_MS = 10;

export interface SinkBench {
  rows: number;
  sinkRate: number;
  copyRate: number;
  lag: { rate: number; p50: number; p99: number; max: number; count: number };
}

/** The table's rows (0 while the sink has not created it yet). */
async function count(db: TestPostgres, table: string): Promise<number> {
  const rows = await db.query<{ n: string }>(`SELECT count(*) AS n FROM ${table}`).catch((err: unknown) => {
    if (err instanceof Error && /does not exist/.test(err.message)) return [{ n: "0" }];
    throw err;
  });
  return Number(rows[0]?.n ?? 0);
}

async function until(what: () => Promise<boolean> | boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await what())) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

function psql(db: TestPostgres, command: string): number {
  const t0 = performance.now();
  const r = spawnSync(join(db.binDir, "psql"), [db.url, "-v", "ON_ERROR_STOP=1", "-q", "-c", command], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`psql failed: ${r.stderr}`);
  return performance.now() - t0;
}

export async function benchSink(h: Harness): Promise<SinkBench> {
  const hub = await startTestHub(h, { windows: false, identityService: false });
  const db = await startPostgres(h);
  const nc = await connectAs(hub.urls, issueUser(hub.keystore, { account: "fleet", role: "service", name: "bench-sink" }).creds ?? "");
  h.defer(() => nc.close());
  const logger = testLogger();

  // --- throughput: a backlog of ROWS readings drained by the sink, against \copy of the same rows ---
  await publishReadings(nc, ROWS);
  const t0 = performance.now();
  const sink = await startPostgresSink({ nc, url: db.url, logger, name: "bench", streams: ["telemetry"], tablePrefix: "bench_" });
  await until(async () => (await count(db, "bench_telemetry")) >= ROWS, 600_000);
  const sinkRate = (ROWS * 1000) / (performance.now() - t0);
  await sink.stop();
  const file = join(h.tempDir("fabric-bench-sink-"), "rows.csv");
  psql(db, `\\copy (SELECT * FROM bench_telemetry) TO '${file}' WITH (FORMAT csv)`);
  psql(db, "CREATE TABLE copy_telemetry (LIKE bench_telemetry INCLUDING ALL)");
  const copyMs = psql(db, `\\copy copy_telemetry FROM '${file}' WITH (FORMAT csv)`);
  if ((await count(db, "copy_telemetry")) !== ROWS) throw new Error("\\copy loaded another number of rows");
  const copyRate = (ROWS * 1000) / copyMs;

  // --- lag: LAG_RATE msg/s for LAG_SECONDS, each reading's publish time against the poll that first sees its row ---
  const live = await startPostgresSink({ nc, url: db.url, logger, name: "bench-lag", streams: ["telemetry"], tablePrefix: "lag_" });
  // the backlog is the lag sink's too: let it drain first, then measure only what is published now
  await until(async () => (await count(db, "lag_telemetry")) >= ROWS, 600_000);
  const sentAt = new Map<number, number>();
  const seen: number[] = [];
  let maxSeen = 0;
  let polling = true;
  const poller = (async () => {
    while (polling) {
      const [r] = await db.query<{ m: string | null }>("SELECT max(stream_seq) AS m FROM lag_telemetry WHERE stream_seq > $1", [maxSeen]);
      const m = Number(r?.m ?? 0);
      const now = performance.now();
      for (let s = maxSeen + 1; s <= m; s++) {
        const at = sentAt.get(s);
        if (at !== undefined) seen.push(now - at);
      }
      if (m > maxSeen) maxSeen = m;
      await new Promise((res) => setTimeout(res, POLL_MS));
    }
  })();
  const publisher = new JetStreamPublisher(nc);
  const total = LAG_RATE * LAG_SECONDS;
  const start = performance.now();
  const acks: Promise<unknown>[] = [];
  for (let i = 0; i < total; i++) {
    const due = start + (i * 1000) / LAG_RATE;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    const sent = performance.now();
    acks.push(
      publisher.publish(`telemetry.lag.d${i % 100}.temp`, Buffer.from(JSON.stringify({ value: i, ts: Date.now() }))).then((a) => {
        sentAt.set(a.seq, sent);
      }),
    );
  }
  const rate = (total * 1000) / (performance.now() - start);
  await Promise.all(acks);
  publisher.close();
  await until(() => seen.length >= total, 120_000);
  polling = false;
  await poller;
  await live.stop();
  const lag = { rate, p50: percentile(seen, 50), p99: percentile(seen, 99), max: Math.max(...seen), count: seen.length };
  return { rows: ROWS, sinkRate, copyRate, lag };
}

export function sinkMarkdown(r: SinkBench): string {
  const ratio = r.sinkRate / r.copyRate;
  return [
    `| path (${fmt(r.rows)} readings of TELEMETRY, ~100 bytes) | rows/s | vs \`\\copy\` |`,
    "| --- | ---: | ---: |",
    `| \`psql \\copy\` of the same rows from a CSV file into a table of the same shape (anchor) | ${fmt(r.copyRate)} | 1× |`,
    `| the sink draining the stream (batches of 1 000 COPYed into the table, staged and merged ON CONFLICT only when a row is there already; acknowledged after COMMIT) | ${fmt(r.sinkRate)} | ${fmt(ratio, 2)}× |`,
    "",
    `Lag from publish to a committed row at ${fmt(r.lag.rate)} msg/s for ${LAG_SECONDS} s (${fmt(r.lag.count)} rows; a poll every ${POLL_MS} ms sees them): p50 ${fmt(r.lag.p50)} ms, p99 ${fmt(r.lag.p99)} ms, max ${fmt(r.lag.max)} ms.`,
    "",
    `Goal (issue 12: ≥ 50 % of \`\\copy\`, lag p99 < 2 s at 10 000 msg/s): throughput ${ratio >= 0.5 ? "**met**" : "**not met**"}, lag ${r.lag.p99 < 2_000 ? "**met**" : "**not met**"}.`,
  ].join("\n");
}
