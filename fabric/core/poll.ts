import { setTimeout as delay } from "node:timers/promises";
import { TimeoutError } from "./errors.js";

export interface PollOptions {
  timeoutMs?: number;
  intervalMs?: number;
  /** Says what was awaited, for the timeout error. */
  what?: string;
}

export const DEFAULT_POLL_TIMEOUT_MS = 20_000; // 20 s
export const DEFAULT_POLL_INTERVAL_MS = 25; // 25 ms

/**
 * Calls `probe` until it returns a value other than undefined (or false), and returns it. Probes that throw
 * count as not ready yet; the last error is the timeout's cause.
 */
export async function pollUntil<T>(probe: () => Promise<T | undefined | false> | T | undefined | false, options: PollOptions = {}): Promise<T> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_POLL_TIMEOUT_MS;
  const intervalMs = options.intervalMs ?? DEFAULT_POLL_INTERVAL_MS;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) {
      throw new TimeoutError(`timed out after ${timeoutMs} ms waiting for ${options.what ?? "a condition"}`, { cause: lastError });
    }
    await delay(intervalMs);
  }
}
