import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { delimiter, join } from "node:path";
import { NatsServerError, ConfigError } from "./errors.js";
import { projectRoot } from "./paths.js";

/** The oldest nats-server the fabric runs on (durable sourcing, working no_advertise, MQTT/JS fixes). */
export const MIN_NATS_SERVER_VERSION = [2, 14, 0] as const;

export interface NatsServerBinary {
  path: string;
  version: string;
  /** Where it was found: the env var, PATH or the project's tools folder. */
  source: "NATS_SERVER_BIN" | "PATH" | "tools";
}

let cached: NatsServerBinary | undefined;

function versionOf(bin: string): [number, number, number] | undefined {
  const r = spawnSync(bin, ["--version"], { encoding: "utf8" });
  if (r.status !== 0) return undefined;
  const m = /v?(\d+)\.(\d+)\.(\d+)/.exec(`${r.stdout}${r.stderr}`);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : undefined;
}

function atLeastMin(v: readonly number[]): boolean {
  for (let i = 0; i < 3; i++) {
    const a = v[i] ?? 0;
    const b = MIN_NATS_SERVER_VERSION[i] ?? 0;
    if (a !== b) return a > b;
  }
  return true;
}

function onPath(name: string): string | undefined {
  for (const dir of (process.env["PATH"] ?? "").split(delimiter)) {
    if (dir !== "" && existsSync(join(dir, name))) return join(dir, name);
  }
  return undefined;
}

function inTools(): string | undefined {
  const base = join(projectRoot(), "tools", "nats-server", "usr");
  return [join(base, "sbin", "nats-server"), join(base, "bin", "nats-server")].find((p) => existsSync(p));
}

/**
 * Finds nats-server >= 2.14: NATS_SERVER_BIN, then PATH, then the project's tools folder (where
 * `scripts/setup.mjs` installs it). Throws a NatsServerError that says how to get one.
 */
export function findNatsServer(): NatsServerBinary {
  if (cached !== undefined) return cached;
  const candidates: [NatsServerBinary["source"], string | undefined][] = [
    ["NATS_SERVER_BIN", process.env["NATS_SERVER_BIN"]],
    ["PATH", onPath("nats-server")],
    ["tools", inTools()],
  ];
  const tooOld: string[] = [];
  for (const [source, path] of candidates) {
    if (path === undefined || path === "" || !existsSync(path)) continue;
    const v = versionOf(path);
    if (v === undefined) continue;
    if (!atLeastMin(v)) {
      tooOld.push(`${path} is ${v.join(".")}`);
      continue;
    }
    cached = { path, version: v.join("."), source };
    return cached;
  }
  const min = MIN_NATS_SERVER_VERSION.join(".");
  if (tooOld.length > 0) {
    throw new NatsServerError("FABRIC_ERR_NATS_SERVER_TOO_OLD", `nats-server >= ${min} is required, found only: ${tooOld.join("; ")}. Run \`node scripts/setup.mjs\` to install a current one into tools/.`);
  }
  throw new NatsServerError("FABRIC_ERR_NATS_SERVER_MISSING", `nats-server >= ${min} not found (NATS_SERVER_BIN, PATH, tools/). Run \`node scripts/setup.mjs\` to install it into tools/.`);
}

/** Runs `nats-server -t -c FILE` and throws a ConfigError with the server's own words if it refuses. */
export function checkNatsServerConfig(configFile: string, bin: string = findNatsServer().path): void {
  const r = spawnSync(bin, ["-t", "-c", configFile], { encoding: "utf8" });
  if (r.status !== 0) {
    const detail = `${r.stdout}${r.stderr}`.trim();
    throw new ConfigError(`nats-server refused the config ${configFile}: ${detail}`, { fields: { configFile } });
  }
}
