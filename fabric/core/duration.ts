import { InvalidInputError } from "./errors.js";

const UNIT_SECONDS: Readonly<Record<string, number>> = { s: 1, m: 60, h: 3600, d: 86_400, w: 604_800, y: 31_536_000 };

/**
 * Parses a duration like `30d`, `24h`, `90m`, `45s`, `1y` (or a sum: `1d12h`) into seconds. `0`, `never`
 * and `none` mean no expiry and return 0. The error names `what`.
 */
export function parseDurationSeconds(text: string, what: string): number {
  const t = text.trim().toLowerCase();
  if (t === "0" || t === "never" || t === "none") return 0;
  const re = /(\d+)\s*([smhdwy])/gy;
  let total = 0;
  let consumed = 0;
  for (const m of t.matchAll(re)) {
    total += Number(m[1]) * (UNIT_SECONDS[m[2] ?? "s"] ?? 1);
    consumed += m[0].length;
  }
  if (consumed !== t.length || total <= 0) {
    throw new InvalidInputError(`${what} ${JSON.stringify(text)} is not a duration: use e.g. 30d, 24h, 90m, 45s (or 0 for none)`);
  }
  return total;
}

const UNIT_BYTES: Readonly<Record<string, number>> = { b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/**
 * Parses a size like `10GB`, `512MiB`, `64m` or `1048576` into bytes. Units are binary (as nats-server counts
 * them): KB = KiB = 1024 bytes. The error names `what`.
 */
export function parseBytes(text: string, what: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(?:([kmgt])(?:i?b)?|(b))?\s*$/i.exec(text);
  const n = m === null ? NaN : Number(m[1]) * (UNIT_BYTES[(m[2] ?? m[3] ?? "b").toLowerCase()] ?? NaN);
  if (!Number.isFinite(n) || n <= 0 || !Number.isSafeInteger(Math.floor(n))) throw new InvalidInputError(`${what} ${JSON.stringify(text)} is not a size: use e.g. 10GB, 512MB, 64MiB`);
  return Math.floor(n);
}
