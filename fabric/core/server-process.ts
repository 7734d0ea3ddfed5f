import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, existsSync, readFileSync, type WriteStream } from "node:fs";
import { join, resolve as resolvePath } from "node:path";
import { NatsServerError, errorMessage } from "./errors.js";
import { findNatsServer } from "./nats-server.js";
import { pollUntil } from "./poll.js";

export const DEFAULT_START_TIMEOUT_MS = 20_000; // 20 s
export const DEFAULT_STOP_TIMEOUT_MS = 10_000; // 10 s

/** The ports a running nats-server listens on (0 where a listener is not configured). */
export interface ServerPorts {
  client: number;
  monitoring: number;
  cluster: number;
  leafnode: number;
  mqtt: number;
  websocket: number;
}

export interface SpawnNatsServerOptions {
  configFile: string;
  /** The config's `ports_file_dir`: readiness is the ports file appearing there. */
  portsDir: string;
  /** Append the server's output to this file; default: keep the last lines in memory only. */
  logFile?: string;
  bin?: string;
  startTimeoutMs?: number;
  /** Called with the pid right after the spawn, before the server listens (a supervisor records it). */
  onSpawn?: (pid: number) => void;
}

export interface NatsServerProcess {
  readonly pid: number;
  readonly ports: ServerPorts;
  /** `nats://127.0.0.1:<client port>` */
  readonly url: string;
  /** Resolves with the exit code (or signal) when the process has exited. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** The last lines the server wrote, for error messages. */
  recentOutput(): string;
  /** SIGTERM, then SIGKILL after the timeout; resolves once exited. */
  stop(timeoutMs?: number): Promise<void>;
  /** Sends a signal (default SIGKILL) and resolves once exited. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  isRunning(): boolean;
}

const KEEP_OUTPUT_CHARS = 8_192;

interface PortsFile {
  nats?: string[];
  monitoring?: string[];
}

function portOf(urls: string[] | undefined): number {
  const first = urls?.[0];
  if (first === undefined) return 0;
  return Number(new URL(first).port);
}

async function fetchJson(url: string): Promise<unknown> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  return res.json();
}

interface Varz {
  cluster?: { cluster_port?: number };
  leaf?: { port?: number };
  mqtt?: { port?: number };
  websocket?: { port?: number };
}

/**
 * Starts nats-server with a config file and resolves once it listens (its ports file exists). The config
 * must set `ports_file_dir` to `portsDir`; cluster, leaf, MQTT and WebSocket ports are read from the
 * monitoring endpoint's varz when monitoring is on.
 */
export async function spawnNatsServer(options: SpawnNatsServerOptions): Promise<NatsServerProcess> {
  const bin = options.bin ?? findNatsServer().path;
  // the config path is absolute on the command line: a leftover server is recognised by it (server-pid-file.ts).
  // A process group of its own: a terminal's Ctrl-C (SIGINT to the foreground group) reaches the fabric only,
  // which then stops its servers in order, instead of each server exiting under the supervisor's feet.
  const child: ChildProcess = spawn(bin, ["-c", resolvePath(options.configFile)], { stdio: ["ignore", "pipe", "pipe"], detached: true });
  let output = "";
  let logStream: WriteStream | undefined;
  if (options.logFile !== undefined) logStream = createWriteStream(options.logFile, { flags: "a", mode: 0o600 });
  const onData = (chunk: Buffer): void => {
    const s = chunk.toString("utf8");
    output = (output + s).slice(-KEEP_OUTPUT_CHARS);
    logStream?.write(chunk);
  };
  child.stdout?.on("data", onData);
  child.stderr?.on("data", onData);

  let running = true;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once("exit", (code, signal) => {
      running = false;
      logStream?.end();
      resolve({ code, signal });
    });
    child.once("error", (err) => {
      running = false;
      output += `\nspawn error: ${errorMessage(err)}`;
      logStream?.end();
      resolve({ code: -1, signal: null });
    });
  });
  const pid = child.pid ?? -1;
  const portsFile = join(options.portsDir, `nats-server_${pid}.ports`);

  let ports: ServerPorts;
  try {
    if (pid > 0) options.onSpawn?.(pid);
    const pf = await pollUntil<PortsFile>(
      () => {
        if (!running) throw new Error("exited");
        if (!existsSync(portsFile)) return undefined;
        return JSON.parse(readFileSync(portsFile, "utf8")) as PortsFile;
      },
      { timeoutMs: options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS, what: `nats-server ${options.configFile} to listen` },
    );
    ports = { client: portOf(pf.nats), monitoring: portOf(pf.monitoring), cluster: 0, leafnode: 0, mqtt: 0, websocket: 0 };
    if (ports.monitoring > 0) {
      const varz = (await fetchJson(`http://127.0.0.1:${ports.monitoring}/varz`)) as Varz;
      ports.cluster = varz.cluster?.cluster_port ?? 0;
      ports.leafnode = varz.leaf?.port ?? 0;
      ports.mqtt = varz.mqtt?.port ?? 0;
      ports.websocket = varz.websocket?.port ?? 0;
    }
  } catch (err) {
    if (running) child.kill("SIGKILL");
    await exited;
    throw new NatsServerError("FABRIC_ERR_NATS_SERVER_START", `nats-server did not start with ${options.configFile}: ${output.trim().split("\n").slice(-5).join("\n")}`, { cause: err });
  }

  const kill = async (signal: NodeJS.Signals = "SIGKILL"): Promise<void> => {
    if (running) child.kill(signal);
    await exited;
  };
  return {
    pid,
    ports,
    url: `nats://127.0.0.1:${ports.client}`,
    exited,
    recentOutput: () => output,
    isRunning: () => running,
    kill,
    stop: async (timeoutMs = DEFAULT_STOP_TIMEOUT_MS) => {
      if (!running) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Polls the monitoring endpoint's /healthz until the server (and its JetStream) reports ok. */
export async function waitHealthy(monitoringPort: number, timeoutMs = DEFAULT_START_TIMEOUT_MS): Promise<void> {
  await pollUntil(
    async () => {
      const res = await fetch(`http://127.0.0.1:${monitoringPort}/healthz`);
      return res.ok;
    },
    { timeoutMs, what: `nats-server on monitoring port ${monitoringPort} to be healthy` },
  );
}
