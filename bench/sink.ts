// The PostgreSQL sink: rows/s from TELEMETRY into PostgreSQL against `psql \copy` of the same rows from a file
// into a table of the same shape (the database's own bulk-load path here: the physical limit), and the lag from
// publish to committed row at 10 000 msg/s. One run, one machine, the same database.
import { spawnSync } from "node:child_process";
import { cpus } from "node:os";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { JetStreamPublisher, pollUntil } from "../fabric/core/index.js";
import { issueUser } from "../identity/index.js";
import { startPostgresSink } from "../sink/index.js";
import { connectAs, startPostgres, startTestHub, testLogger, type Harness, type TestPostgres } from "../test/harness/index.js";
import { publishReadings } from "../test/sink/sink-helpers.js";
import { childrenNamed, exitedChildrenCpuMs, fmt, percentile, treeCpuMs } from "./lib.js";

const ROWS = 200_000;
const LAG_RATE = 10_000; // msg/s
const LAG_SECONDS = 10;
const POLL_MS = 10;

/** CPU microseconds per row, by process. */
export interface RowCpu {
  /** The sink (this process) or psql. */
  client: number;
  natsServer: number;
  postgres: number;
}

export interface SinkBench {
  rows: number;
  sinkRate: number;
  copyRate: number;
  sinkCpu: RowCpu;
  copyCpu: RowCpu;
  cores: number;
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

/** CPU (ms) so far of this process, its nats-servers and PostgreSQL (the postmaster and its backends). */
function cpuNow(): { self: number; exited: number; natsServer: number; postgres: number } {
  const u = process.cpuUsage();
  const sum = (pids: number[]): number => pids.reduce((a, p) => a + (treeCpuMs(p) || 0), 0);
  return { self: (u.user + u.system) / 1000, exited: exitedChildrenCpuMs(), natsServer: sum(childrenNamed("nats-server")), postgres: sum(childrenNamed("postgres")) };
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
  const jsm = await jetstreamManager(nc);
  const perRow = (ms: number): number => (ms * 1000) / ROWS;
  const c0 = cpuNow();
  const t0 = performance.now();
  const sink = await startPostgresSink({ nc, url: db.url, logger, name: "bench", streams: ["telemetry"], tablePrefix: "bench_" });
  // drained: everything delivered and acknowledged, which the sink does after COMMIT (the count is checked below)
  await pollUntil(
    async () => {
      const c = await jsm.consumers.info("TELEMETRY", "sink-bench-telemetry");
      return c.num_pending === 0 && c.num_ack_pending === 0 && c.delivered.stream_seq >= ROWS;
    },
    { timeoutMs: 600_000, intervalMs: POLL_MS, what: "the sink to drain the backlog" },
  );
  const sinkRate = (ROWS * 1000) / (performance.now() - t0);
  const c1 = cpuNow();
  if ((await count(db, "bench_telemetry")) !== ROWS) throw new Error("the sink wrote another number of rows");
  const sinkCpu = { client: perRow(c1.self - c0.self), natsServer: perRow(c1.natsServer - c0.natsServer), postgres: perRow(c1.postgres - c0.postgres) };
  await sink.stop();
  const file = join(h.tempDir("fabric-bench-sink-"), "rows.csv");
  psql(db, `\\copy (SELECT * FROM bench_telemetry) TO '${file}' WITH (FORMAT csv)`);
  psql(db, "CREATE TABLE copy_telemetry (LIKE bench_telemetry INCLUDING ALL)");
  const c2 = cpuNow();
  const copyMs = psql(db, `\\copy copy_telemetry FROM '${file}' WITH (FORMAT csv)`);
  const c3 = cpuNow();
  if ((await count(db, "copy_telemetry")) !== ROWS) throw new Error("\\copy loaded another number of rows");
  const copyRate = (ROWS * 1000) / copyMs;
  const copyCpu = { client: perRow(c3.exited - c2.exited), natsServer: perRow(c3.natsServer - c2.natsServer), postgres: perRow(c3.postgres - c2.postgres) };

  // --- lag: LAG_RATE msg/s for LAG_SECONDS, each reading's publish time against the poll that first sees its row ---
  const live = await startPostgresSink({ nc, url: db.url, logger, name: "bench-lag", streams: ["telemetry"], tablePrefix: "lag_" });
  // the backlog is the lag sink's too: let it drain first, then measure only what is published now
  await pollUntil(async () => (await count(db, "lag_telemetry")) >= ROWS, { timeoutMs: 600_000, intervalMs: POLL_MS, what: "the lag sink to drain the backlog" });
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
  await pollUntil(() => seen.length >= total, { timeoutMs: 120_000, intervalMs: POLL_MS, what: "every lag sample" });
  polling = false;
  await poller;
  await live.stop();
  const lag = { rate, p50: percentile(seen, 50), p99: percentile(seen, 99), max: Math.max(...seen), count: seen.length };
  return { rows: ROWS, sinkRate, copyRate, sinkCpu, copyCpu, cores: cpus().length, lag };
}

const total = (c: RowCpu): number => c.client + c.natsServer + c.postgres;

export function sinkMarkdown(r: SinkBench): string {
  const ratio = r.sinkRate / r.copyRate;
  const cpu = (c: RowCpu): string => `${fmt(c.client, 1)} | ${fmt(c.natsServer, 1)} | ${fmt(c.postgres, 1)} | ${fmt(total(c), 1)}`;
  // what the machine's cores allow at that CPU cost per row, if every process ran in parallel without waiting
  const ceiling = (c: RowCpu): number => (r.cores * 1e6) / total(c);
  return [
    `| path (${fmt(r.rows)} readings of TELEMETRY, ~100 bytes) | rows/s | vs \`\\copy\` | CPU µs/row: sink or psql | nats-server | PostgreSQL | total | rows/s the ${r.cores} cores allow at that cost |`,
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    `| \`psql \\copy\` of the same rows from a CSV file into a table of the same shape (anchor) | ${fmt(r.copyRate)} | 1× | ${cpu(r.copyCpu)} | ${fmt(ceiling(r.copyCpu))} |`,
    `| the sink draining the stream (consume, group commit of up to 5 000 rows COPYed with the position in one transaction, one acknowledgement per batch) | ${fmt(r.sinkRate)} | ${fmt(ratio, 2)}× | ${cpu(r.sinkCpu)} | ${fmt(ceiling(r.sinkCpu))} |`,
    "",
    `Lag from publish to a committed row at ${fmt(r.lag.rate)} msg/s for ${LAG_SECONDS} s (${fmt(r.lag.count)} rows; a poll every ${POLL_MS} ms sees them): p50 ${fmt(r.lag.p50)} ms, p99 ${fmt(r.lag.p99)} ms, max ${fmt(r.lag.max)} ms.`,
    "",
    `Goal (issue 12: ≥ 50 % of \`\\copy\`, lag p99 < 2 s at 10 000 msg/s): throughput ${ratio >= 0.5 ? "**met**" : "**not met**"}, lag ${r.lag.p99 < 2_000 ? "**met**" : "**not met**"}.`,
  ].join("\n");
}
