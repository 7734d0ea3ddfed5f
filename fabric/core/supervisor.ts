import { setTimeout as delay } from "node:timers/promises";
import { errorMessage } from "./errors.js";
import type { Logger } from "./logger.js";
import { removeServerPidFile, stopLeftoverServer, writeServerPidFile } from "./server-pid-file.js";
import { spawnNatsServer, type NatsServerProcess, type SpawnNatsServerOptions } from "./server-process.js";

export const SUPERVISOR_MIN_BACKOFF_MS = 250; // 250 ms
export const SUPERVISOR_MAX_BACKOFF_MS = 30_000; // 30 s
/** A run this long counts as healthy and resets the backoff. */
export const SUPERVISOR_STABLE_MS = 30_000; // 30 s

export interface SupervisorOptions {
  name: string;
  logger: Logger;
  /** Called before every start (first and restarts) for the spawn options: configs may change between runs. */
  spawnOptions: () => SpawnNatsServerOptions;
  /**
   * The server's pid file (SERVER_PID_FILE in its node's data directory), written at every start and removed when
   * it stops. A server an earlier supervisor left running (it was SIGKILLed) is found by it and stopped before a start.
   */
  pidFile: string;
  /** Called after every successful (re)start. */
  onStart?: (proc: NatsServerProcess, restart: boolean) => void | Promise<void>;
}

export interface Supervisor {
  current(): NatsServerProcess;
  restarts(): number;
  stop(): Promise<void>;
}

/**
 * Starts nats-server and keeps it running: when it exits unexpectedly it is restarted with exponential
 * backoff (250 ms doubling to 30 s, reset after a run of 30 s). The first start's failure is thrown.
 */
export async function superviseNatsServer(options: SupervisorOptions): Promise<Supervisor> {
  const log = options.logger.child({ server: options.name });
  let stopping = false;
  let restarts = 0;
  const spawn = async (): Promise<NatsServerProcess> => {
    const so = options.spawnOptions();
    await stopLeftoverServer({ pidFile: options.pidFile, configFile: so.configFile, portsDir: so.portsDir, logger: log });
    const p = await spawnNatsServer({ ...so, onSpawn: (pid) => writeServerPidFile(options.pidFile, pid, so.configFile, so.portsDir) });
    void p.exited.then(() => removeServerPidFile(options.pidFile, p.pid));
    return p;
  };
  let proc = await spawn();
  await options.onStart?.(proc, false);
  log.info({ pid: proc.pid, ports: proc.ports }, "nats-server started");

  const loop = (async () => {
    let backoff = SUPERVISOR_MIN_BACKOFF_MS;
    for (;;) {
      const startedAt = Date.now();
      const exit = await proc.exited;
      if (stopping) return;
      if (Date.now() - startedAt > SUPERVISOR_STABLE_MS) backoff = SUPERVISOR_MIN_BACKOFF_MS;
      log.warn({ code: exit.code, signal: exit.signal, restartInMs: backoff, lastOutput: proc.recentOutput().trim().split("\n").slice(-3).join(" | ") }, "nats-server exited; restarting");
      for (;;) {
        await delay(backoff);
        backoff = Math.min(backoff * 2, SUPERVISOR_MAX_BACKOFF_MS);
        if (stopping) return;
        try {
          proc = await spawn();
          if (stopping) {
            await proc.stop();
            return;
          }
          restarts++;
          await options.onStart?.(proc, true);
          log.info({ pid: proc.pid, restarts }, "nats-server restarted");
          break;
        } catch (err) {
          log.error({ err: errorMessage(err), restartInMs: backoff }, "nats-server restart failed");
        }
      }
    }
  })();

  return {
    current: () => proc,
    restarts: () => restarts,
    stop: async () => {
      stopping = true;
      await proc.stop();
      await loop;
    },
  };
}
