import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { Writable } from "node:stream";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { createLogger, pollUntil, renderMetrics } from "../../fabric/core/index.js";
import { issueUser } from "../../identity/index.js";
import type { SinkStatus } from "../../sink/index.js";
import { connectAs, Harness, runCli, startPostgres, startTestHub, type CliResult, type TestHub, type TestPostgres } from "../harness/index.js";
import { publishReadings } from "./sink-helpers.js";

const h = new Harness();
let hub: TestHub;
let db: TestPostgres;
let nc: NatsConnection;
let conn: string[];
let dir: string;
let hubLogs = "";
/** Everything the CLI printed, to check that no password reached it. */
let cliOutput = "";

beforeAll(async () => {
  const logger = createLogger({ level: "debug", destination: new Writable({ write: (chunk: Buffer, _e, cb) => ((hubLogs += chunk.toString()), cb()) }) });
  [hub, db] = await Promise.all([startTestHub(h, { windows: false, identityService: false, logger }), startPostgres(h)]);
  dir = h.tempDir("fabric-sinks-");
  const creds = join(dir, "cli.creds");
  writeFileSync(creds, issueUser(hub.keystore, { account: "fleet", role: "service", name: "sinks-cli" }).creds ?? "", { mode: 0o600 });
  conn = ["--store", hub.keystoreDir, "--data", hub.dataDir, "--creds", creds, "--server", ...hub.urls];
  nc = await connectAs(hub.urls, issueUser(hub.keystore, { account: "fleet", role: "service", name: "sinks-test" }).creds ?? "", { reconnect: true });
  h.defer(() => nc.close());
}, 120_000);
afterAll(() => h.dispose());

async function fabric(...args: string[]): Promise<CliResult> {
  // --server takes several values: the subcommand's own arguments go first
  const r = await runCli("fabric", [...args, ...conn]);
  cliOutput += r.stdout + r.stderr;
  return r;
}

/** The database URL without its password, and the password in a 0600 file only the hub's process reads. */
function definitionFile(name: string, extra: Record<string, unknown>): string {
  const url = new URL(db.url);
  url.password = "";
  const passwordFile = join(dir, "pg.password");
  writeFileSync(passwordFile, `${db.password}\n`, { mode: 0o600 });
  const file = join(dir, `${name}.yaml`);
  writeFileSync(file, [`name: ${name}`, "kind: postgres", `url: ${url.toString()}`, `passwordFile: ${passwordFile}`, "streams: [telemetry]", ...Object.entries(extra).map(([k, v]) => `${k}: ${JSON.stringify(v)}`), ""].join("\n"));
  return file;
}

const count = async (table: string): Promise<number> => Number((await db.query<{ n: string }>(`SELECT count(*) AS n FROM ${table}`).catch(() => [{ n: "0" }]))[0]?.n ?? 0);

describe("sinks run by the hub from definitions in KV", () => {
  it("refuses an invalid definition naming the field, and a URL with a password without echoing it", async () => {
    const bad = join(dir, "bad.json");
    writeFileSync(bad, JSON.stringify({ name: "Bad Name", kind: "postgres", url: "postgres://u@h/db", streams: ["bogus"] }));
    const r1 = await fabric("sinks", "add", bad);
    expect(r1.code).toBe(2);
    expect(r1.stderr).toMatch(/sink\.name: must be a token/);
    expect(r1.stderr).toMatch(/sink\.streams\.0/);

    const withPassword = join(dir, "with-password.json");
    writeFileSync(withPassword, JSON.stringify({ name: "p", kind: "postgres", url: db.url }));
    const r2 = await fabric("sinks", "add", withPassword);
    expect(r2.code).toBe(2);
    expect(r2.stderr).toMatch(/sink\.url: must not contain a password/);
    expect(r2.stderr).not.toContain(db.password);
    expect((await fabric("sinks", "ls", "--json")).stdout.trim()).toBe("[]");
  });

  it("a definition added with the CLI is run by the hub: rows in PostgreSQL, lag 0 in status and metrics; rm stops it and deletes its consumer", async () => {
    const added = await fabric("sinks", "add", definitionFile("svc", { tablePrefix: "svc_", maxBatch: 100 }));
    expect(added.code).toBe(0);
    const ls = await fabric("sinks", "ls", "--json");
    expect((JSON.parse(ls.stdout) as { name: string; tablePrefix: string }[]).map((d) => [d.name, d.tablePrefix])).toEqual([["svc", "svc_"]]);
    const described = await fabric("sinks", "describe", "svc", "--json");
    expect(JSON.parse(described.stdout)).toMatchObject({ name: "svc", kind: "postgres", streams: ["telemetry"], maxBatch: 100, passwordFile: join(dir, "pg.password") });
    expect((await fabric("sinks", "describe", "svc")).stdout).toMatch(/password: file /);

    await publishReadings(nc, 500);
    await pollUntil(async () => (await count("svc_telemetry")) === 500, { timeoutMs: 30_000, what: "500 rows in svc_telemetry" });

    const status = await pollUntil(
      async () => {
        const r = await fabric("sinks", "status", "svc", "--json");
        const [s] = JSON.parse(r.stdout) as SinkStatus[];
        const c = s?.consumers[0];
        const runner = s?.runners[0];
        return c?.pending === 0 && c.ackPending === 0 && runner?.streams[0]?.lastBatchAt !== undefined && runner.streams[0].written === 500 ? s : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 500, what: "sinks status with lag 0 and a runner's report" },
    );
    expect(status.consumers).toEqual([{ stream: "TELEMETRY", consumer: "sink-svc-telemetry", exists: true, pending: 0, ackPending: 0 }]);
    expect(status.runners).toHaveLength(1);
    expect(status.runners[0]).toMatchObject({ sink: "svc", state: "running", streams: [{ stream: "TELEMETRY", table: "svc_telemetry", database: "up", role: "active", rejected: 0 }] });
    expect((await fabric("sinks", "status", "svc")).stdout).toContain("TELEMETRY\tactive\tdatabase up\twritten 500");
    expect(status.url).not.toContain(db.password);

    const metrics = (await renderMetrics()).body;
    expect(metrics).toContain('fabric_sink_rows_total{sink="svc",table="svc_telemetry",result="written"} 500');
    expect(metrics).toContain('fabric_sink_lag_messages{sink="svc",stream="TELEMETRY"} 0');
    expect(metrics).toContain('fabric_sink_database_up{sink="svc"} 1');
    expect(metrics).toMatch(/fabric_sink_batches_total\{sink="svc",stream="TELEMETRY",result="ok"\} [1-9]/);
    expect(metrics).toMatch(/fabric_sink_batch_seconds_count\{sink="svc",stream="TELEMETRY"\} [1-9]/);

    const rm = await fabric("sinks", "rm", "svc");
    expect(rm.code).toBe(0);
    expect(rm.stderr).toContain("sink svc removed, its consumers deleted");
    const jsm = await jetstreamManager(nc);
    await expect(jsm.consumers.info("TELEMETRY", "sink-svc-telemetry")).rejects.toThrow(/consumer not found/);
    expect((await renderMetrics()).body).not.toContain('fabric_sink_database_up{sink="svc"}');

    // a reading after rm: another sink (a new definition, started by the same hub) writes it, svc_telemetry does not
    await publishReadings(nc, 1, Date.UTC(2024, 6, 1));
    expect((await fabric("sinks", "add", definitionFile("check", { tablePrefix: "chk_" }))).code).toBe(0);
    await pollUntil(async () => (await count("chk_telemetry")) === 501, { timeoutMs: 30_000, what: "501 rows in chk_telemetry" });
    expect(await count("svc_telemetry")).toBe(500);
    expect(await count("svc_telemetry WHERE time >= '2024-07-01'")).toBe(0);

    // a changed definition restarts its sink (same name: same consumer, so it goes on from its position into the new table)
    expect((await fabric("sinks", "add", definitionFile("check", { tablePrefix: "chk2_" }))).code).toBe(0);
    let published = 0;
    await pollUntil(
      async () => {
        await publishReadings(nc, 1, Date.UTC(2024, 7, 1) + published++);
        return (await count("chk2_telemetry")) > 0;
      },
      { timeoutMs: 30_000, intervalMs: 200, what: "rows in chk2_telemetry after the change" },
    );
    await pollUntil(async () => (await count("chk_telemetry")) + (await count("chk2_telemetry")) === 501 + published, { what: "every reading in chk_ or chk2_, once" });
    expect((await fabric("sinks", "rm", "check")).code).toBe(0);

    expect(hubLogs).toContain("postgres sink started");
    expect(hubLogs).not.toContain(db.password);
    expect(cliOutput).not.toContain(db.password);
  });

  it("passwordEnv: a variable missing from the hub's environment is a failed runner naming it; once set, the sink runs", async () => {
    const variable = "FABRIC_TEST_SINK_PASSWORD";
    delete process.env[variable];
    h.defer(() => void delete process.env[variable]);
    const url = new URL(db.url);
    url.password = "";
    const file = join(dir, "env.json");
    writeFileSync(file, JSON.stringify({ name: "envpw", kind: "postgres", url: url.toString(), passwordEnv: variable, streams: ["telemetry"], tablePrefix: "env_" }));
    expect((await fabric("sinks", "add", file)).code).toBe(0);
    const failed = await pollUntil(
      async () => {
        const [s] = JSON.parse((await fabric("sinks", "status", "envpw", "--json")).stdout) as SinkStatus[];
        return s?.runners[0]?.state === "failed" ? s.runners[0] : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 500, what: "the runner's failed report" },
    );
    expect(failed.error).toBe(`sink envpw: its passwordEnv ${variable} is not set in this process's environment`);
    expect((await fabric("sinks", "status", "envpw")).stdout).toContain(variable);

    // the hub (this process) gets the variable: its next report starts the sink, which reads the stream from its start
    process.env[variable] = db.password;
    const streamMessages = (await (await jetstreamManager(nc)).streams.info("TELEMETRY")).state.messages;
    await pollUntil(async () => (await count("env_telemetry")) === streamMessages, { timeoutMs: 30_000, what: "the stream in env_telemetry" });
    expect((await fabric("sinks", "rm", "envpw")).code).toBe(0);
    expect(hubLogs).not.toContain(db.password);
  });
});
