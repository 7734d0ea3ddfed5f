import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import pg from "pg";
import { pickFreePorts, pollUntil, projectRoot } from "../../fabric/core/index.js";
import type { Harness } from "./servers.js";

interface FoundPostgres {
  binDir: string;
  env: Record<string, string>;
  where: string;
  version: string;
}

interface SetupModule {
  findPostgres(): FoundPostgres | undefined;
  findTimescaledb(): (FoundPostgres & { timescaledb: string }) | undefined;
}

export interface StartPostgresOptions {
  /**
   * A PostgreSQL with the TimescaleDB extension (`node scripts/setup.mjs --timescaledb`): timescaledb preloaded
   * (telemetry off) and `CREATE EXTENSION timescaledb` run in the test database.
   */
  timescaledb?: boolean;
}

/** A private PostgreSQL cluster of a test's own. */
export interface TestPostgres {
  /** `postgres://fabric:<password>@127.0.0.1:<port>/fabric` */
  url: string;
  password: string;
  port: number;
  /** Where its server programs are (initdb, postgres; psql too where the installation has it: the TimescaleDB build has not). */
  binDir: string;
  /** Fast shutdown (SIGINT), awaited. */
  stop(): Promise<void>;
  /** SIGKILL to the postmaster and every backend (its process group): a crash, for outage tests. */
  kill(): Promise<void>;
  /** Starts it again on the same port and data (after stop or kill); resolves once it accepts connections. */
  restart(): Promise<void>;
  /** A query on a connection of its own (opened and closed per call). */
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(sql: string, params?: unknown[]): Promise<R[]>;
}

const USER = "fabric";
const DATABASE = "fabric";
const START_TIMEOUT_MS = 30_000; // 30 s

async function postgresPrograms(timescaledb: boolean): Promise<FoundPostgres> {
  const setup = (await import(pathToFileURL(join(projectRoot(), "scripts", "setup.mjs")).href)) as SetupModule;
  const flag = timescaledb ? "--timescaledb" : "--postgres";
  const found = timescaledb ? setup.findTimescaledb() : setup.findPostgres();
  if (found === undefined) throw new Error(`postgres${timescaledb ? " with timescaledb" : ""} not found: run \`node scripts/setup.mjs ${flag}\` (npm test does)`);
  return found;
}

/**
 * initdb and postgres refuse to run as root: as root, they run as `nobody` (setpriv, with the data directory
 * made theirs); otherwise as the current user.
 */
const AS_ROOT = process.getuid?.() === 0;
function command(bin: string, args: string[]): [string, string[]] {
  return AS_ROOT ? ["setpriv", ["--reuid=nobody", "--regid=nogroup", "--clear-groups", bin, ...args]] : [bin, args];
}

/** Server settings of a TimescaleDB cluster: the extension's library preloaded (it must be), no telemetry sent. */
const TIMESCALEDB_SETTINGS = ["-c", "shared_preload_libraries=timescaledb", "-c", "timescaledb.telemetry_level=off"];

/**
 * initdb into a temp directory (password auth over TCP on 127.0.0.1 with a generated password, trust on the
 * unix socket in that directory), then postgres on a free port (picked again if taken meanwhile), as the
 * leader of a process group of its own so kill() takes its backends too. Stopped on dispose. With
 * `timescaledb`, the TimescaleDB build, and the extension created in the test database.
 */
export async function startPostgres(h: Harness, options: StartPostgresOptions = {}): Promise<TestPostgres> {
  const timescaledb = options.timescaledb === true;
  const { binDir, env: toolEnv } = await postgresPrograms(timescaledb);
  const env = { ...process.env, ...toolEnv, LC_ALL: "C" };
  const dir = h.tempDir("fabric-pg-");
  const data = join(dir, "data");
  const password = randomBytes(12).toString("hex");
  writeFileSync(join(dir, "pwfile"), `${password}\n`);
  if (AS_ROOT) {
    const r = spawnSync("chown", ["-R", "nobody:nogroup", dir], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`chown ${dir} failed: ${r.stderr}`);
  }
  chmodSync(dir, 0o700);
  const [initBin, initArgs] = command(join(binDir, "initdb"), ["-D", data, "-U", USER, "-E", "UTF8", "--no-sync", "--auth-local=trust", "--auth-host=scram-sha-256", `--pwfile=${join(dir, "pwfile")}`]);
  const init = spawnSync(initBin, initArgs, { env, encoding: "utf8", timeout: START_TIMEOUT_MS });
  if (init.status !== 0) throw new Error(`initdb failed:\n${init.stdout}${init.stderr}`);

  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  let log = "";
  let port = 0;
  const admin = (): pg.ClientConfig => ({ host: "127.0.0.1", port, user: USER, password, database: "postgres", connectionTimeoutMillis: 2_000 });

  const spawnServer = async (): Promise<void> => {
    const [bin, args] = command(join(binDir, "postgres"), [
      "-D", data, "-p", String(port), "-k", dir, "-c", "listen_addresses=127.0.0.1",
      // fsync off (the tests crash processes, never the machine); commits still reach the kernel before they return
      "-c", "fsync=off", "-c", "full_page_writes=off", "-c", "max_connections=50", "-c", "shared_buffers=64MB",
      ...(timescaledb ? TIMESCALEDB_SETTINGS : []),
    ]);
    const c = spawn(bin, args, { env, stdio: ["ignore", "ignore", "pipe"], detached: true });
    log = "";
    c.stderr?.on("data", (d: Buffer) => (log += d.toString()));
    let gone = false;
    exited = new Promise<void>((resolve) => c.once("exit", () => ((gone = true), resolve())));
    child = c;
    await pollUntil(
      async () => {
        if (gone) throw new Error(`postgres exited:\n${log}`);
        const client = new pg.Client(admin());
        await client.connect();
        await client.end();
        return true;
      },
      { timeoutMs: START_TIMEOUT_MS, intervalMs: 50, what: "postgres accepting connections" },
    ).catch(async (err: unknown) => {
      if (!gone) process.kill(-(c.pid ?? 0), "SIGKILL");
      await exited;
      throw err;
    });
  };

  for (let attempt = 1; ; attempt++) {
    [port] = (await pickFreePorts(1)) as [number];
    try {
      await spawnServer();
      break;
    } catch (err) {
      if (attempt >= 3 || !/could not bind|already in use/i.test(log)) throw new Error(`postgres did not start:\n${log}`, { cause: err });
    }
  }
  {
    const client = new pg.Client(admin());
    await client.connect();
    await client.query(`CREATE DATABASE ${DATABASE}`);
    await client.end();
  }
  if (timescaledb) {
    const client = new pg.Client({ ...admin(), database: DATABASE });
    await client.connect();
    await client.query("CREATE EXTENSION timescaledb");
    await client.end();
  }

  const signalGroup = async (sig: NodeJS.Signals): Promise<void> => {
    const c = child;
    if (c === undefined || c.exitCode !== null || c.signalCode !== null) return;
    try {
      process.kill(-(c.pid ?? 0), sig);
    } catch {
      // gone already
    }
    await exited;
    child = undefined;
  };
  const url = `postgres://${USER}:${password}@127.0.0.1:${port}/${DATABASE}`;
  const pgTest: TestPostgres = {
    url,
    password,
    port,
    binDir,
    // SIGINT is postgres's fast shutdown; the group signal reaches nothing else (the backends exit with it)
    stop: async () => {
      const c = child;
      if (c === undefined || c.exitCode !== null) return;
      c.kill("SIGINT");
      await exited;
      child = undefined;
    },
    kill: () => signalGroup("SIGKILL"),
    restart: async () => {
      if (child !== undefined) throw new Error("postgres is running: stop() or kill() it first");
      await spawnServer();
    },
    query: async <R extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<R[]> => {
      const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
      await client.connect();
      try {
        return (await client.query<R>(sql, params)).rows;
      } finally {
        await client.end();
      }
    },
  };
  h.defer(() => signalGroup("SIGKILL"));
  return pgTest;
}
