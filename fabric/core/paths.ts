import { homedir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { existsSync } from "node:fs";

/**
 * The fabric's home: FABRIC_HOME if set, else `$XDG_DATA_HOME/fabric` (default `~/.local/share/fabric`).
 * It roots the keystore (`<home>/keys`) and the default hub data directory (`<home>/hub`), for `fabric` and
 * `fabric-id` alike.
 */
export function fabricHome(env: NodeJS.ProcessEnv = process.env): string {
  const explicit = env["FABRIC_HOME"];
  if (explicit !== undefined && explicit !== "") return resolve(explicit);
  const xdg = env["XDG_DATA_HOME"];
  const base = xdg !== undefined && xdg !== "" ? xdg : join(homedir(), ".local", "share");
  return join(base, "fabric");
}

export function defaultKeystoreDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(fabricHome(env), "keys");
}

export function defaultHubDataDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(fabricHome(env), "hub");
}

let root: string | undefined;

/** The project's root folder (where package.json is), from source or from dist/. */
export function projectRoot(): string {
  if (root !== undefined) return root;
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "package.json")) && dirname(dir) !== dir) dir = dirname(dir);
  root = dir;
  return dir;
}
