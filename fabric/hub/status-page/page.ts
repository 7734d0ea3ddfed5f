import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { projectRoot } from "../../core/index.js";

export interface StatusPageDocument {
  html: string;
  /** A Content-Security-Policy that lets only the page's own inline script and style run, and fetch only its origin. */
  csp: string;
}

let cached: StatusPageDocument | undefined;

const hashes = (html: string, tag: string): string[] =>
  [...html.matchAll(new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`, "g"))].map((m) => `'sha256-${createHash("sha256").update(m[1] ?? "", "utf8").digest("base64")}'`);

/** The page (page.html next to this module's source: a static file, no build step), read once. */
export function statusPageDocument(): StatusPageDocument {
  if (cached !== undefined) return cached;
  const html = readFileSync(join(projectRoot(), "fabric", "hub", "status-page", "page.html"), "utf8");
  const csp = [
    "default-src 'none'",
    `script-src ${hashes(html, "script").join(" ")}`,
    `style-src ${hashes(html, "style").join(" ")}`,
    "connect-src 'self'",
    "img-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join("; ");
  cached = { html, csp };
  return cached;
}
