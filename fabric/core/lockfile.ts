import { closeSync, openSync, readFileSync, rmSync, statSync, writeSync } from "node:fs";
import { pollUntil } from "./poll.js";
import { processAlive, processStartTime } from "./process-info.js";

export const DEFAULT_LOCK_TIMEOUT_MS = 15_000; // 15 s

/**
 * A lock file holds "<pid> <start time>" of its owner. The start time tells a live owner from a process that got
 * its pid after the owner died (a container restarted, a crashed `fabric up` whose pid came round again), so a
 * dead owner's lock never blocks a restart. A file with a pid only (older versions) is judged by the pid.
 */
function holderOf(text: string): number | undefined {
  const [pidText, started] = text.trim().split(/\s+/);
  const pid = Number(pidText);
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  if (!processAlive(pid)) return -1;
  if (started !== undefined && started !== processStartTime(pid)) return -1;
  return pid;
}

function tryTake(path: string): boolean {
  try {
    const fd = openSync(path, "wx", 0o600);
    writeSync(fd, `${process.pid} ${processStartTime(process.pid) ?? ""}`.trim());
    closeSync(fd);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
  }
  let holder: number | undefined;
  try {
    holder = holderOf(readFileSync(path, "utf8"));
    // A lock file seen empty may be in the middle of being written: only an old one counts as stale.
    if (holder === undefined) holder = Date.now() - statSync(path).mtimeMs > 1_000 ? -1 : 0;
  } catch {
    return false; // released meanwhile
  }
  if (holder === -1) rmSync(path, { force: true });
  return false;
}

/** The pid holding a lock file, if a live process does. */
export function lockHolder(path: string): number | undefined {
  try {
    const pid = holderOf(readFileSync(path, "utf8"));
    return pid !== undefined && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Takes a lock file (created with O_EXCL, holding the owner's pid; a lock whose owner died is taken over),
 * waiting up to `timeoutMs` (0: try once). Returns the release function.
 */
export async function acquireLockFile(path: string, timeoutMs = DEFAULT_LOCK_TIMEOUT_MS): Promise<() => void> {
  if (timeoutMs <= 0) {
    if (!tryTake(path) && !tryTake(path)) throw new Error(`lock ${path} is held by pid ${lockHolder(path) ?? "?"}`);
  } else {
    await pollUntil(() => tryTake(path), { timeoutMs, intervalMs: 10, what: `lock ${path}` });
  }
  return () => rmSync(path, { force: true });
}
