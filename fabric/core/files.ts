import { randomBytes } from "node:crypto";
import { chmodSync, closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from "node:fs";
import { dirname, join, basename } from "node:path";
import { ConfigError } from "./errors.js";

/** Creates a directory (and parents) with mode 0700, and tightens an existing one to 0700. */
export function ensurePrivateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
}

/**
 * Writes a file atomically: a temporary file in the same directory, fsynced, then renamed over the target,
 * so a reader sees the old content or the new, never a torn one. `mode` applies from creation.
 */
export function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o644): void {
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString("hex")}.tmp`);
  const fd = openSync(tmp, "wx", mode);
  try {
    writeSync(fd, typeof data === "string" ? Buffer.from(data, "utf8") : data);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  }
  closeSync(fd);
  renameSync(tmp, path);
  chmodSync(path, mode);
}

/** writeFileAtomic with mode 0600, for seeds, creds and anything secret. */
export function writeSecretFile(path: string, data: string | Uint8Array): void {
  writeFileAtomic(path, data, 0o600);
}

/** Reads and parses a JSON file, with an error naming the file when it is not JSON. */
export function readJsonFile(path: string): unknown {
  const text = readFileSync(path, "utf8");
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new ConfigError(`${path} is not valid JSON`, { cause: err, fields: { path } });
  }
}
