import { readdirSync, readFileSync } from "node:fs";
import { processCpuTimes } from "../core/index.js";

/** A local process of the fabric's, found by its command line: nats-server, or a `fabric` hub/ingress/worker. */
export interface FabricProcess {
  pid: number;
  /** `nats-server`, or `fabric <command>`. */
  what: string;
}

/** The fabric's processes on this machine (Linux /proc; none elsewhere). */
export function localFabricProcesses(): FabricProcess[] {
  let pids: string[];
  try {
    pids = readdirSync("/proc").filter((d) => /^\d+$/.test(d));
  } catch {
    return [];
  }
  const out: FabricProcess[] = [];
  for (const p of pids) {
    let args: string[];
    try {
      args = readFileSync(`/proc/${p}/cmdline`, "utf8").split("\u0000").filter((a) => a !== "");
    } catch {
      continue;
    }
    if (args.some((a) => /(^|\/)nats-server$/.test(a))) out.push({ pid: Number(p), what: "nats-server" });
    else {
      const i = args.findIndex((a) => /fabric\/cli\/main\.js$|(^|\/)fabric$/.test(a));
      const command = i >= 0 ? args[i + 1] : undefined;
      if (command !== undefined && ["up", "serve", "ingress", "worker"].includes(command)) out.push({ pid: Number(p), what: `fabric ${command}` });
    }
  }
  return out;
}

/** CPU time (user + system) a process has used, in ms; undefined when it is gone. */
export function cpuMs(pid: number): number | undefined {
  const own = processCpuTimes(pid).own;
  return Number.isNaN(own) ? undefined : own;
}
