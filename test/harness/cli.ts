import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { projectRoot } from "../../fabric/core/index.js";

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The built CLIs (`npm test` builds dist/ first). */
export type CliName = "fabric" | "fabric-id" | "fabric-edge";
const CLI_ENTRIES: Readonly<Record<CliName, string>> = { fabric: "fabric/cli/main.js", "fabric-id": "identity/cli/main.js", "fabric-edge": "edge/cli/main.js" };

export function cliPath(cli: CliName): string {
  const p = join(projectRoot(), "dist", CLI_ENTRIES[cli]);
  if (!existsSync(p)) throw new Error(`${p} is missing: run \`npm run build\` (npm test does)`);
  return p;
}

interface Spawned {
  child: ChildProcessWithoutNullStreams;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<number | null>;
}

function spawnCli(cli: CliName, args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string; group?: boolean }): Spawned {
  const child = spawn(process.execPath, [cliPath(cli), ...args], {
    cwd: options.cwd ?? projectRoot(),
    env: { ...process.env, FABRIC_LOG_LEVEL: "info", ...options.env },
    stdio: ["pipe", "pipe", "pipe"],
    detached: options.group === true,
  });
  child.stdin.end();
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code) => resolve(code));
  });
  return { child, stdout: () => stdout, stderr: () => stderr, exited };
}

/** Runs a CLI to completion with its own env, capturing stdout and stderr. */
export async function runCli(cli: CliName, args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {}): Promise<CliResult> {
  const p = spawnCli(cli, args, options);
  const timer = setTimeout(() => p.child.kill("SIGKILL"), options.timeoutMs ?? 60_000);
  try {
    const code = await p.exited;
    return { code, stdout: p.stdout(), stderr: p.stderr() };
  } finally {
    clearTimeout(timer);
  }
}

export interface RunningCli {
  pid: number;
  /** Resolves with the first complete JSON document the process printed on stdout. */
  json<T>(timeoutMs?: number): Promise<T>;
  stdout(): string;
  stderr(): string;
  /** Sends a signal and resolves with the exit code once it has exited. */
  signal(sig: NodeJS.Signals): Promise<number | null>;
  /** With `group`: sends a signal to its whole process group, as a terminal's Ctrl-C does; resolves as signal does. */
  signalGroup(sig: NodeJS.Signals): Promise<number | null>;
  exited: Promise<number | null>;
}

/**
 * Starts a long-running CLI (`fabric up`); killed on dispose by the caller's harness. `group`: the leader of a
 * process group of its own, like a command started from a terminal (see signalGroup).
 */
export function startCli(cli: CliName, args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string; group?: boolean } = {}): RunningCli {
  const { child, stdout: out, stderr, exited } = spawnCli(cli, args, options);
  return {
    pid: child.pid ?? -1,
    stdout: out,
    stderr,
    exited,
    json: async <T>(timeoutMs = 60_000): Promise<T> => {
      const deadline = Date.now() + timeoutMs;
      let done = false;
      void exited.then(() => (done = true));
      for (;;) {
        try {
          return JSON.parse(out()) as T;
        } catch {
          // not complete yet
        }
        if (done) throw new Error(`${cli} exited before printing JSON:\n${stderr()}`);
        if (Date.now() > deadline) throw new Error(`${cli} printed no JSON within ${timeoutMs} ms:\n${stderr()}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    signal: async (sig) => {
      if (child.exitCode === null && child.signalCode === null) child.kill(sig);
      return exited;
    },
    signalGroup: async (sig) => {
      if (options.group !== true) throw new Error("signalGroup needs startCli(…, { group: true })");
      if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) process.kill(-child.pid, sig);
      return exited;
    },
  };
}
