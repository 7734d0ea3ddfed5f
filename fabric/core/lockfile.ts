import { closeSync, openSync, readFileSync, rmSync, statSync, writeSync } from "node:fs";
import { pollUntil } from "./poll.js";

export const DEFAULT_LOCK_TIMEOUT_MS = 15_000; // 15 s

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

function tryTake(path: string): boolean {
  try {
    const fd = openSync(path, "wx", 0o600);
    writeSync(fd, String(process.pid));
    closeSync(fd);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
  }
  let holder: number;
  try {
    holder = Number(readFileSync(path, "utf8"));
    // A lock file seen empty may be in the middle of being written: only an old one counts as stale.
    if (!Number.isInteger(holder) || holder <= 0) holder = Date.now() - statSync(path).mtimeMs > 1_000 ? -1 : 0;
  } catch {
    return false; // released meanwhile
  }
  if (holder === -1 || (holder > 0 && !pidAlive(holder))) rmSync(path, { force: true });
  return false;
}

/** The pid holding a lock file, if a live process does. */
export function lockHolder(path: string): number | undefined {
  try {
    const pid = Number(readFileSync(path, "utf8"));
    return Number.isInteger(pid) && pid > 0 && pidAlive(pid) ? pid : undefined;
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
