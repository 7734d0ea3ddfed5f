import { spawn } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { processAlive, runsServerConfig } from "../../fabric/core/index.js";
import type { Harness } from "./servers.js";

/** The live nats-servers of a node's data directory (`<nodeDir>/nats-server.conf`), by the ports files in `<nodeDir>/run`. */
export function nodeServerPids(nodeDir: string): number[] {
  const run = join(nodeDir, "run");
  if (!existsSync(run)) return [];
  return readdirSync(run).flatMap((f) => {
    const pid = Number(/^nats-server_(\d+)\.ports$/.exec(f)?.[1] ?? NaN);
    return processAlive(pid) && runsServerConfig(pid, join(nodeDir, "nats-server.conf")) ? [pid] : [];
  });
}

/** Kills, on dispose, whatever nats-server of these node directories is still running (the orphans a test made). */
export function reapOnDispose(h: Harness, nodeDirs: string[]): void {
  h.defer(() => {
    for (const dir of nodeDirs) for (const pid of nodeServerPids(dir)) process.kill(pid, "SIGKILL");
  });
}

/** A live process that is not a nats-server (`sleep`), killed on dispose: what a reused pid looks like. */
export function unrelatedProcess(h: Harness): number {
  const child = spawn("sleep", ["300"], { stdio: "ignore" });
  h.defer(() => void child.kill("SIGKILL"));
  if (child.pid === undefined) throw new Error("could not spawn sleep");
  return child.pid;
}
