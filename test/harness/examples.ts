import { execFile } from "node:child_process";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { projectRoot } from "../../fabric/core/index.js";

/** A python3 that runs examples/python: `env` holds what to add to the environment (tools/python paths). */
export interface PythonToolchain {
  bin: string;
  env: Record<string, string>;
  where: string;
  grpcVersion: string;
}

export type GoBuild = { ok: true; binary: string; go: string; where: string } | { ok: false; reasons: string[] };

interface SetupModule {
  findPython(): PythonToolchain | undefined;
  buildGoExample(outDir: string): GoBuild;
}

/** scripts/setup.mjs, whose discovery (and tools/ layout) `node scripts/setup.mjs --examples` uses. */
async function setupModule(): Promise<SetupModule> {
  return (await import(pathToFileURL(join(projectRoot(), "scripts", "setup.mjs")).href)) as SetupModule;
}

/** The python3 the examples run with, found as setup finds it; throws saying how to get one. */
export async function examplePython(): Promise<PythonToolchain> {
  const py = (await setupModule()).findPython();
  if (py === undefined) throw new Error("no python3 with grpc and cryptography/nacl: run `node scripts/setup.mjs --examples`");
  return py;
}

/** Builds examples/go/publish into `outDir` with the Go toolchain setup finds; throws with what was tried. */
export async function buildGoPublish(outDir: string): Promise<string> {
  const go = (await setupModule()).buildGoExample(outDir);
  if (!go.ok) throw new Error(`examples/go does not build (run \`node scripts/setup.mjs --examples\`): ${go.reasons.join("; ")}`);
  return go.binary;
}

export interface ExampleRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs an example to its end (killed after `timeoutMs`), resolving with its exit code and output. */
export function runExample(cmd: string, args: string[], env: Record<string, string> = {}, timeoutMs = 30_000): Promise<ExampleRun> {
  return new Promise((resolve) => {
    // no __pycache__ left in examples/python
    execFile(cmd, args, { env: { ...process.env, PYTHONDONTWRITEBYTECODE: "1", ...env }, timeout: timeoutMs, encoding: "utf8" }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === "number" ? err.code : -1;
      resolve({ code, stdout, stderr });
    });
  });
}
