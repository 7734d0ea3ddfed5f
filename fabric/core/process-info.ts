import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";

/**
 * What the system says of another process, by pid: whether it runs, its command line and when it started. Linux
 * answers from /proc; elsewhere `ps` does. Pids are reused, so a pid alone never identifies a process: callers
 * check the command line (or the start time) before acting on one.
 */

function procStat(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // "pid (comm) state ppid …": comm may hold spaces and parentheses, so fields count from the last ')'
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  } catch {
    return undefined;
  }
}

const hasProc = ((): boolean => {
  try {
    readFileSync("/proc/self/stat");
    return true;
  } catch {
    return false;
  }
})();

/**
 * CPU times (ms) of a process from /proc (Linux; NaN elsewhere): its own (utime + stime) and its exited children's
 * it has waited for (cutime + cstime). /proc counts in USER_HZ, 100 on Linux whatever the kernel's tick.
 */
export function processCpuTimes(pid: number | "self"): { own: number; children: number } {
  const f = pid === "self" ? procStat(process.pid) : procStat(pid);
  if (f === undefined) return { own: Number.NaN, children: Number.NaN };
  return { own: ((Number(f[11]) + Number(f[12])) * 1000) / 100, children: ((Number(f[13]) + Number(f[14])) * 1000) / 100 };
}

/** The process exists and is not a zombie (an exited child its parent has not reaped, e.g. under a PID 1 that never reaps). */
export function processAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  if (!hasProc) return true;
  const stat = procStat(pid);
  return stat !== undefined && stat[0] !== "Z" && stat[0] !== "X";
}

/** The process's start time (clock ticks since boot on Linux; `ps`'s lstart elsewhere), or undefined when it is gone. */
export function processStartTime(pid: number): string | undefined {
  if (hasProc) return procStat(pid)?.[19];
  try {
    const s = execFileSync("ps", ["-o", "lstart=", "-p", String(pid)], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
    return s === "" ? undefined : s;
  } catch {
    return undefined;
  }
}

/**
 * The process's arguments (argv[0] first), or undefined when it is gone or cannot be read. Without /proc `ps`
 * joins them with spaces, so an argument holding a space comes back split.
 */
export function processArgs(pid: number): string[] | undefined {
  if (hasProc) {
    try {
      const raw = readFileSync(`/proc/${pid}/cmdline`, "utf8");
      if (raw === "") return undefined; // a zombie or a kernel thread
      return raw.replace(/\0$/, "").split("\0");
    } catch {
      return undefined;
    }
  }
  try {
    const s = execFileSync("ps", ["-o", "args=", "-p", String(pid)], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
    return s === "" ? undefined : s.split(/\s+/);
  } catch {
    return undefined;
  }
}
