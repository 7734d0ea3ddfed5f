import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { pollUntil, renderMetrics } from "../../fabric/core/index.js";
import { startPostgresSink, type PostgresSink } from "../../sink/index.js";
import { Harness, startCli, testLogger, type TestHub } from "../harness/index.js";
import { startPostgres, type TestPostgres } from "../harness/postgres.js";
import { publishReadings, rowCount, sinkTestHub, tableSummary } from "./sink-helpers.js";

const N = 50_000;
const h = new Harness();
let hub: TestHub;
let nc: NatsConnection;
let db: TestPostgres;

beforeAll(async () => {
  [{ hub, nc }, db] = await Promise.all([sinkTestHub(h), startPostgres(h)]);
});
afterAll(() => h.dispose());

const position = async (): Promise<number | undefined> => {
  const [r] = await db.query<{ seq: string }>("SELECT seq FROM fabric_sink_positions WHERE sink = 'postgres' AND stream = 'telemetry'").catch(() => []);
  return r === undefined ? undefined : Number(r.seq);
};

/** This process's count of rows of the in-process sink (`postgres`) by result. */
async function rowsMetric(result: "written" | "duplicate"): Promise<number> {
  const m = new RegExp(`fabric_sink_rows_total\\{sink="postgres",table="fabric_telemetry",result="${result}"\\} (\\d+)`).exec((await renderMetrics()).body);
  return Number(m?.[1] ?? 0);
}

describe("PostgreSQL sink: one writer per sink, its position in the database", () => {
  let standby: PostgresSink;

  it("two processes run one sink: one writes, the other stands by and takes over from the position when the writer is SIGKILLed", async () => {
    await publishReadings(nc, N);
    // the writer: a process of its own, with its metrics on a port the system picks
    const writer = startCli("fabric", ["sink", "postgres", "--streams", "telemetry", "--batch", "200", "--metrics-port", "0", "--store", hub.keystoreDir, "--data", hub.dataDir, "--server", ...hub.urls], { env: { FABRIC_SINK_PG_URL: db.url } });
    h.defer(async () => void (await writer.signal("SIGKILL")));
    await pollUntil(async () => ((await rowCount(db)) >= 2_000 ? true : undefined), { timeoutMs: 30_000, intervalMs: 20, what: "the first process writing" });

    standby = await startPostgresSink({ nc, logger: testLogger(), url: db.url, streams: ["telemetry"], retryMaxMs: 200 });
    h.defer(() => standby.stop());
    const [waiting] = await pollUntil(async () => {
      const s = await standby.status();
      return s[0]?.role === "standby" ? s : undefined;
    }, { what: "the second sink standing by" });
    expect(waiting).toMatchObject({ database: "up", written: 0 });
    expect((await renderMetrics()).body).toContain('fabric_sink_writing{sink="postgres",stream="TELEMETRY"} 0');

    // the writer's own metrics endpoint (printed with its start)
    const url = /metrics (http:\/\/[^\s;]+)/.exec(writer.stderr())?.[1];
    expect(url).toBeDefined();
    const scraped = await (await fetch(url ?? "")).text();
    expect(Number(/fabric_sink_rows_total\{sink="postgres",table="fabric_telemetry",result="written"\} (\d+)/.exec(scraped)?.[1])).toBeGreaterThan(0);

    await writer.signal("SIGKILL");
    const atKill = await rowCount(db);
    expect(atKill).toBeLessThan(N); // killed while it loaded
    const [active] = await pollUntil(async () => {
      const s = await standby.status();
      return s[0]?.role === "active" ? s : undefined;
    }, { timeoutMs: 20_000, what: "the second sink taking over" });
    expect(active).toMatchObject({ database: "up" });
    expect((await renderMetrics()).body).toContain('fabric_sink_writing{sink="postgres",stream="TELEMETRY"} 1');
    await pollUntil(async () => ((await rowCount(db)) >= N ? true : undefined), { timeoutMs: 60_000, intervalMs: 100, what: `all ${N} rows` });
    expect(await tableSummary(db)).toEqual({ rows: N, distinct: N, min: 1, max: N });
    await pollUntil(async () => ((await position()) === N ? true : undefined), { what: "the position at the stream's end" });
    // it started at the writer's committed position: it wrote the rest (the writer's last batch, at most 200,
    // may have committed after the count at the kill) and met no row already there
    const written = await rowsMetric("written");
    expect(written).toBeLessThanOrEqual(N - atKill);
    expect(written).toBeGreaterThanOrEqual(N - atKill - 200);
    expect(await rowsMetric("duplicate")).toBe(0);
  }, 120_000);

  it("a consumer deleted under the sink is made again at the position: nothing twice, nothing missed", async () => {
    const jsm = await jetstreamManager(nc);
    await jsm.consumers.delete("TELEMETRY", "sink-postgres-telemetry");
    await publishReadings(nc, 1_000, Date.UTC(2024, 6, 1));
    await pollUntil(async () => ((await rowCount(db)) >= N + 1_000 ? true : undefined), { timeoutMs: 30_000, what: "the readings after the deletion" });
    expect(await tableSummary(db)).toEqual({ rows: N + 1_000, distinct: N + 1_000, min: 1, max: N + 1_000 });
    expect((await jsm.consumers.info("TELEMETRY", "sink-postgres-telemetry")).config.opt_start_seq).toBe(N + 1);
    expect(await rowsMetric("duplicate")).toBe(0);
  });

  it("a sink stopped and started again reads on from its position", async () => {
    await standby.stop();
    await publishReadings(nc, 500, Date.UTC(2024, 7, 1));
    const again = await startPostgresSink({ nc, logger: testLogger(), url: db.url, streams: ["telemetry"] });
    h.defer(() => again.stop());
    await pollUntil(async () => ((await rowCount(db)) >= N + 1_500 ? true : undefined), { timeoutMs: 30_000, what: "the readings published while it was stopped" });
    expect(await tableSummary(db)).toEqual({ rows: N + 1_500, distinct: N + 1_500, min: 1, max: N + 1_500 });
    expect(await position()).toBe(N + 1_500);
    expect(await rowsMetric("duplicate")).toBe(0);
  });
});
