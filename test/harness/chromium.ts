import { execFile } from "node:child_process";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { projectRoot } from "../../fabric/core/index.js";

/** A Chromium found as `node scripts/setup.mjs --chromium` finds it; `env`: what to add (tools/chromium libraries). */
export interface ChromiumBinary {
  bin: string;
  env: Record<string, string>;
  where: string;
  version: string;
}

interface SetupModule {
  findChromium(): ChromiumBinary | undefined;
}

/** The Chromium the browser tests use; throws saying how to get one. */
export async function findChromium(): Promise<ChromiumBinary> {
  const setup = (await import(pathToFileURL(join(projectRoot(), "scripts", "setup.mjs")).href)) as SetupModule;
  const found = setup.findChromium();
  if (found === undefined) throw new Error("no chromium: run `node scripts/setup.mjs --chromium`");
  return found;
}

export const WINDOW = { width: 1280, height: 900 } as const;

/**
 * Headless Chromium loading `url` (as root: without the sandbox), letting its scripts run for `budgetMs` of
 * virtual time, then `--dump-dom` (resolves with the DOM) or `--screenshot=FILE` at WINDOW's size.
 */
export function headless(chromium: ChromiumBinary, url: string, what: { dumpDom: true } | { screenshot: string }, budgetMs = 3_000, profileDir?: string): Promise<string> {
  const args = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-extensions",
    "--hide-scrollbars",
    `--window-size=${WINDOW.width},${WINDOW.height}`,
    `--virtual-time-budget=${budgetMs}`,
    ...(profileDir === undefined ? [] : [`--user-data-dir=${profileDir}`]),
    ...("dumpDom" in what ? ["--dump-dom"] : [`--screenshot=${what.screenshot}`]),
    url,
  ];
  return new Promise((resolve, reject) => {
    execFile(chromium.bin, args, { env: { ...process.env, ...chromium.env }, timeout: 60_000, maxBuffer: 16 * 1024 * 1024, encoding: "utf8" }, (err, stdout, stderr) => {
      if (err !== null) reject(new Error(`chromium ${args.join(" ")} failed: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}
