import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import type { IncomingMessage } from "node:http";
import { join } from "node:path";
import { ensurePrivateDir, writeSecretFile } from "../../core/index.js";

/** The status page's access token, in the hub's data directory (0600), made on the first non-loopback start. */
export const STATUS_TOKEN_FILE = "status-page.token";
/** The user name the README gives for HTTP Basic (any user name is accepted: the token is the password). */
export const STATUS_BASIC_USER = "fabric";
const LOOPBACK_HOSTS = new Set(["127.0.0.1", "::1", "localhost"]);

/** True when the page is bound to loopback only, by configuration: then it asks for no credential. */
export function isLoopbackOnly(host: string): boolean {
  return LOOPBACK_HOSTS.has(host.trim().toLowerCase());
}

/** The token (and its file): read from `<dataDir>/status-page.token`, or made there now (32 random bytes). */
export function ensureStatusToken(dataDir: string): { path: string; token: string } {
  const path = join(dataDir, STATUS_TOKEN_FILE);
  if (existsSync(path)) {
    const token = readFileSync(path, "utf8").trim();
    if (token.length >= 16) return { path, token };
  }
  ensurePrivateDir(dataDir);
  const token = randomBytes(32).toString("base64url");
  writeSecretFile(path, `${token}\n`);
  return { path, token };
}

const digest = (s: string): Buffer => createHash("sha256").update(s, "utf8").digest();

/** The credential a request shows: `Authorization: Bearer <token>`, or HTTP Basic with the token as password. */
function presented(req: IncomingMessage): string | undefined {
  const h = req.headers.authorization;
  if (h === undefined) return undefined;
  const m = /^(Bearer|Basic)\s+(\S+)\s*$/i.exec(h);
  if (m === null || m[2] === undefined) return undefined;
  if (m[1]?.toLowerCase() === "bearer") return m[2];
  const decoded = Buffer.from(m[2], "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  return colon < 0 ? undefined : decoded.slice(colon + 1);
}

/** Whether the request carries the token (compared in constant time, as digests). */
export function hasToken(req: IncomingMessage, token: string): boolean {
  const p = presented(req);
  return p !== undefined && timingSafeEqual(digest(p), digest(token));
}
