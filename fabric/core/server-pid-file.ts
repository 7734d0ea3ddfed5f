import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { z } from "zod";
import { NatsServerError, errorMessage } from "./errors.js";
import { writeFileAtomic } from "./files.js";
import type { Logger } from "./logger.js";
import { pollUntil } from "./poll.js";
import { processAlive, processArgs, processStartTime } from "./process-info.js";

/** The pid file a supervised nats-server gets in its node's data directory. */
export const SERVER_PID_FILE = "nats-server.pid";
/** How long a leftover server has to stop on SIGTERM before it is killed. */
export const LEFTOVER_STOP_TIMEOUT_MS = 10_000; // 10 s
const LEFTOVER_KILL_TIMEOUT_MS = 5_000; // 5 s
const POLL_EXIT_MS = 50; // 50 ms

const pidRecordSchema = z.strictObject({
  pid: z.number().int().positive(),
  /** The absolute config path it was started with (`nats-server -c <configFile>`). */
  configFile: z.string().min(1),
  /** SHA-256 of the config it was started with. */
  configSha256: z.string().regex(/^[0-9a-f]{64}$/),
  /** Where the server writes its ports file. */
  portsFile: z.string().min(1),
  /** When the supervisor started it (epoch ms) and the process's own start time (tells a reused pid). */
  startedAt: z.number().int(),
  processStart: z.string().optional(),
});
export type ServerPidRecord = z.infer<typeof pidRecordSchema>;

/** The ports file nats-server writes into `ports_file_dir`. */
export function portsFileOf(portsDir: string, pid: number): string {
  return join(portsDir, `nats-server_${pid}.ports`);
}

/** Records a just-spawned server (0600, atomically): pid, config path and hash, ports file, start time. */
export function writeServerPidFile(path: string, pid: number, configFile: string, portsDir: string): void {
  const processStart = processStartTime(pid);
  const record: ServerPidRecord = {
    pid,
    configFile: resolve(configFile),
    configSha256: createHash("sha256").update(readFileSync(configFile)).digest("hex"),
    portsFile: portsFileOf(portsDir, pid),
    startedAt: Date.now(),
    ...(processStart === undefined ? {} : { processStart }),
  };
  writeFileAtomic(path, `${JSON.stringify(record, null, 2)}\n`, 0o600);
}

/** Removes the pid file if it still names `pid` (a newer server's is left alone). */
export function removeServerPidFile(path: string, pid: number): void {
  try {
    const r = pidRecordSchema.safeParse(JSON.parse(readFileSync(path, "utf8")));
    if (!r.success || r.data.pid === pid) rmSync(path, { force: true });
  } catch {
    // gone already
  }
}

/** Whether `pid` runs nats-server with `-c <configFile>`: the check that a pid was not reused by another program. */
export function runsServerConfig(pid: number, configFile: string): boolean {
  const args = processArgs(pid);
  if (args === undefined || !basename(args[0] ?? "").startsWith("nats-server")) return false;
  const want = resolve(configFile);
  return args.some((a, i) => i > 0 && (a === "-c" || a === "--config") && args[i + 1] !== undefined && resolve(args[i + 1] ?? "") === want);
}

export interface StopLeftoverServerOptions {
  /** The node's pid file (SERVER_PID_FILE in its data directory). */
  pidFile: string;
  configFile: string;
  /** The config's `ports_file_dir`: a ports file there names a server too (one started before pid files existed). */
  portsDir: string;
  logger: Logger;
  stopTimeoutMs?: number;
}

/**
 * Before a node's server starts: stops a nats-server left running by an earlier supervisor that died without
 * stopping it (SIGKILL, the OOM killer). It is found by the node's pid file, or by a ports file the server left,
 * and stopped only when the system shows that pid running nats-server with this node's config: a pid reused by
 * another program is never signalled. SIGTERM (nats-server shuts down cleanly, JetStream flushed), then SIGKILL
 * after `stopTimeoutMs`. Such a server is stopped rather than adopted: its stdout and stderr were pipes to the
 * dead supervisor, so its log is lost and every line it writes fails (EPIPE, or SIGPIPE for a Go program's
 * stdout); and its config may be older than the keystore and ports the new start writes. Returns the pids it stopped.
 */
export async function stopLeftoverServer(o: StopLeftoverServerOptions): Promise<number[]> {
  const log = o.logger;
  const candidates = new Set<number>();
  if (existsSync(o.pidFile)) {
    try {
      candidates.add(pidRecordSchema.parse(JSON.parse(readFileSync(o.pidFile, "utf8"))).pid);
    } catch (err) {
      log.warn({ pidFile: o.pidFile, err: errorMessage(err) }, "pid file is damaged: ignored");
    }
  }
  const portsFiles = new Map<number, string>();
  if (existsSync(o.portsDir)) {
    for (const f of readdirSync(o.portsDir)) {
      const m = /^nats-server_(\d+)\.ports$/.exec(f);
      if (m === null) continue;
      const pid = Number(m[1]);
      candidates.add(pid);
      portsFiles.set(pid, join(o.portsDir, f));
    }
  }
  const stopped: number[] = [];
  for (const pid of candidates) {
    if (pid === process.pid || !processAlive(pid)) continue;
    if (!runsServerConfig(pid, o.configFile)) {
      log.info({ pid, configFile: o.configFile }, "a pid recorded for this node now belongs to another program: left alone");
      continue;
    }
    log.warn({ pid, configFile: o.configFile }, "a nats-server of this data directory is left over from an earlier run: stopping it");
    await terminate(pid, o.stopTimeoutMs ?? LEFTOVER_STOP_TIMEOUT_MS);
    stopped.push(pid);
    log.info({ pid }, "leftover nats-server stopped");
  }
  rmSync(o.pidFile, { force: true });
  for (const [pid, file] of portsFiles) if (!processAlive(pid)) rmSync(file, { force: true });
  return stopped;
}

/** SIGTERM, then SIGKILL after the timeout; resolves once the process is gone (polled: it is not our child). */
async function terminate(pid: number, stopTimeoutMs: number): Promise<void> {
  const signal = (s: NodeJS.Signals): void => {
    try {
      process.kill(pid, s);
    } catch {
      // exited meanwhile
    }
  };
  const gone = (timeoutMs: number): Promise<boolean> =>
    pollUntil(() => !processAlive(pid), { timeoutMs, intervalMs: POLL_EXIT_MS, what: `leftover nats-server ${pid} to exit` }).catch(() => false);
  signal("SIGTERM");
  if (await gone(stopTimeoutMs)) return;
  signal("SIGKILL");
  if (await gone(LEFTOVER_KILL_TIMEOUT_MS)) return;
  throw new NatsServerError("FABRIC_ERR_NATS_SERVER_LEFTOVER", `a nats-server left over from an earlier run (pid ${pid}) does not stop: stop it by hand`, { fields: { pid } });
}
