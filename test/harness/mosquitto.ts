import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { projectRoot } from "../../fabric/core/index.js";

const ROOT = (): string => join(projectRoot(), "tools", "mosquitto");

/** A mosquitto program from tools/ (scripts/setup.mjs --mosquitto installs it) with its libraries. */
export function mosquittoCommand(program: "mosquitto" | "mosquitto_pub" | "mosquitto_sub"): { bin: string; env: NodeJS.ProcessEnv } {
  const bin = join(ROOT(), "usr", program === "mosquitto" ? "sbin" : "bin", program);
  if (!existsSync(bin)) throw new Error(`${bin} is missing: run \`node scripts/setup.mjs --mosquitto\` (npm test does)`);
  const libs = [join(ROOT(), "usr", "lib", "x86_64-linux-gnu"), join(ROOT(), "lib", "x86_64-linux-gnu")];
  return { bin, env: { ...process.env, LD_LIBRARY_PATH: [...libs, process.env["LD_LIBRARY_PATH"] ?? ""].join(":") } };
}

export interface Spawned {
  child: ChildProcessWithoutNullStreams;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<number | null>;
}

/** Starts a mosquitto program; the caller ends it (or it ends by itself). */
export function spawnMosquitto(program: "mosquitto" | "mosquitto_pub" | "mosquitto_sub", args: string[]): Spawned {
  const { bin, env } = mosquittoCommand(program);
  const child = spawn(bin, args, { env, stdio: ["pipe", "pipe", "pipe"] });
  child.stdin.end();
  let out = "";
  let err = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr.on("data", (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
  return { child, stdout: () => out, stderr: () => err, exited };
}
