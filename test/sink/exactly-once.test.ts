import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NatsConnection } from "@nats-io/transport-node";
import { pollUntil } from "../../fabric/core/index.js";
import { Harness, runCli, startCli, type RunningCli, type TestHub } from "../harness/index.js";
import { startPostgres, type TestPostgres } from "../harness/postgres.js";
import { publishReadings, rowCount, sinkTestHub, tableSummary } from "./sink-helpers.js";

const N = 100_000;
const KILLS = 4;
const h = new Harness();
let hub: TestHub;
let nc: NatsConnection;
let db: TestPostgres;

beforeAll(async () => {
  [{ hub, nc }, db] = await Promise.all([sinkTestHub(h), startPostgres(h)]);
});
afterAll(() => h.dispose());

describe("fabric sink postgres: exactly once across SIGKILLs", () => {
  it("refuses a bad URL, stream name or number of days with exit code 2, naming the flag and not the password", async () => {
    const badUrl = await runCli("fabric", ["sink", "postgres", "--url", "http://u:s3cret@x/db", "--store", hub.keystoreDir, "--data", hub.dataDir]);
    expect(badUrl.code).toBe(2);
    expect(badUrl.stderr).toMatch(/--url: must be a postgres:\/\//);
    expect(badUrl.stderr).not.toContain("s3cret");
    const badStream = await runCli("fabric", ["sink", "postgres", "--url", db.url, "--streams", "telemetry,commands", "--store", hub.keystoreDir, "--data", hub.dataDir]);
    expect(badStream.code).toBe(2);
    expect(badStream.stderr).toMatch(/--streams\[1\]: /);
    const badDays = await runCli("fabric", ["sink", "postgres", "--url", db.url, "--compress-after-days", "-1", "--store", hub.keystoreDir, "--data", hub.dataDir]);
    expect(badDays.code).toBe(2);
    expect(badDays.stderr).toMatch(/--compress-after-days: /);
  });

  it(`${N} readings, the sink SIGKILLed ${KILLS} times while it loads: the table equals the stream`, async () => {
    await publishReadings(nc, N);
    const env = { FABRIC_SINK_PG_URL: db.url };
    const sinkCli = (): RunningCli => {
      const c = startCli("fabric", ["sink", "postgres", "--streams", "telemetry", "--store", hub.keystoreDir, "--data", hub.dataDir, "--server", ...hub.urls], { env });
      h.defer(async () => void (await c.signal("SIGKILL")));
      return c;
    };
    const killedAt: number[] = [];
    for (let k = 0; k < KILLS; k++) {
      const cli = sinkCli();
      // a random point in this run's share of the load
      const target = Math.floor(((k + Math.random()) * N) / (KILLS + 1));
      await pollUntil(async () => (await rowCount(db)) >= target, { timeoutMs: 40_000, intervalMs: 20, what: `${target} rows before kill ${k + 1}` });
      await cli.signal("SIGKILL");
      killedAt.push(await rowCount(db));
      expect(cli.stderr()).not.toContain(db.password);
    }
    expect(killedAt.at(-1)).toBeLessThan(N); // every kill landed while it loaded
    const last = sinkCli();
    await pollUntil(async () => (await rowCount(db)) >= N, { timeoutMs: 40_000, intervalMs: 100, what: `all ${N} rows` });
    expect(await tableSummary(db)).toEqual({ rows: N, distinct: N, min: 1, max: N });
    expect(await last.signal("SIGTERM")).toBe(0);
    expect(last.stderr()).not.toContain(db.password);
  }, 120_000);
});
