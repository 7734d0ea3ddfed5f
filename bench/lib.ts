import { cpus, totalmem, platform, release } from "node:os";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { findNatsServer, processCpuTimes, projectRoot } from "../fabric/core/index.js";

/** Percentile of a list of numbers (nearest rank). */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank] ?? NaN;
}

/** Runs `fn` repeatedly for about `ms` milliseconds; returns operations per second. */
export async function rate(fn: () => unknown, ms: number, batch = 100): Promise<number> {
  for (let i = 0; i < batch; i++) await fn(); // warm-up
  let n = 0;
  const start = performance.now();
  while (performance.now() - start < ms) {
    for (let i = 0; i < batch; i++) await fn();
    n += batch;
  }
  return (n * 1000) / (performance.now() - start);
}

export function machine(): string {
  const cpu = cpus()[0]?.model ?? "unknown CPU";
  return `${cpus().length} × ${cpu}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, ${platform()} ${release()}, Node ${process.version}, nats-server ${findNatsServer().version}`;
}

export const fmt = (n: number, digits = 0): string => n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });

/**
 * Replaces one benchmark's section of bench/RESULTS.md (between `<!-- bench:NAME -->` markers), so each
 * benchmark can be rerun alone without losing the others' figures.
 */
export function writeSection(name: string, markdown: string): void {
  const path = join(projectRoot(), "bench", "RESULTS.md");
  const header = "# Benchmark results\n\nWritten by the benchmarks themselves (`npm run bench`, or `npm run bench -- <name>` for one). Each section says when, on what machine, and how to rerun it.\n";
  let text = existsSync(path) ? readFileSync(path, "utf8") : header;
  const open = `<!-- bench:${name} -->`;
  const close = `<!-- /bench:${name} -->`;
  const block = `${open}\n${markdown.trim()}\n${close}`;
  const i = text.indexOf(open);
  const j = text.indexOf(close);
  text = i >= 0 && j > i ? text.slice(0, i) + block + text.slice(j + close.length) : `${text.trimEnd()}\n\n${block}\n`;
  writeFileSync(path, text);
}

const cpuTimes = processCpuTimes;

/** CPU time (user + system, ms) a process has used so far. */
export function processCpuMs(pid: number): number {
  return cpuTimes(pid).own;
}

/** CPU (ms) of this process's children that have exited and been waited for (a psql run). */
export function exitedChildrenCpuMs(): number {
  return cpuTimes("self").children;
}

/** The pids of a process's direct children (Linux); empty elsewhere. */
export function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/**
 * CPU time (ms) of a process and everything under it: its own, its exited children's it has waited for (cutime,
 * cstime: a PostgreSQL backend that ended), and its live children's, recursively. Linux; NaN elsewhere.
 */
export function treeCpuMs(pid: number): number {
  const t = cpuTimes(pid);
  return childPids(pid).reduce((sum, c) => sum + (treeCpuMs(c) || 0), t.own + t.children);
}

/** This process's children running `comm` (the program's name as /proc shows it: nats-server, postgres). */
export function childrenNamed(comm: string): number[] {
  return childPids(process.pid).filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/comm`, "utf8").trim() === comm;
    } catch {
      return false;
    }
  });
}

/** CPU time used by each named process during `fn`, in ms. */
export async function cpuDuring<T>(pids: Record<string, number>, fn: () => Promise<T>): Promise<{ result: T; cpuMs: Record<string, number> }> {
  const before = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, processCpuMs(pid)]));
  const result = await fn();
  const cpuMs = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, processCpuMs(pid) - (before[k] ?? NaN)]));
  return { result, cpuMs };
}
