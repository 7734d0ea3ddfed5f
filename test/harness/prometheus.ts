import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { z } from "zod";
import { pickFreePorts, pollUntil, projectRoot } from "../../fabric/core/index.js";

interface SetupModule {
  findPrometheus(): { bin: string; where: string; version: string } | undefined;
}

/** A Prometheus server of a test's own, scraping `targets` every second. */
export interface TestPrometheus {
  url: string;
  /** An instant query (`/api/v1/query`): each series's labels and value. */
  query(promql: string): Promise<{ metric: Record<string, string>; value: number }[]>;
  /** The sum of an instant query's values (0 when it has none). */
  scalar(promql: string): Promise<number>;
  stop(): Promise<void>;
}

const queryResponseSchema = z.object({
  status: z.literal("success"),
  data: z.object({ resultType: z.literal("vector"), result: z.array(z.object({ metric: z.record(z.string(), z.string()), value: z.tuple([z.number(), z.string()]) })) }),
});

/** Prometheus as setup finds it (`node scripts/setup.mjs --prometheus`, which npm test runs). */
async function prometheusBinary(): Promise<string> {
  const setup = (await import(pathToFileURL(join(projectRoot(), "scripts", "setup.mjs")).href)) as SetupModule;
  const found = setup.findPrometheus();
  if (found === undefined) throw new Error("prometheus not found: run `node scripts/setup.mjs --prometheus` (npm test does)");
  return found.bin;
}

/**
 * Starts Prometheus on a free loopback port (it cannot report a port it picked itself, so one is picked for it,
 * and picked again if taken meanwhile) with a temporary storage directory and a config scraping each job's
 * targets every second; resolves once `/-/ready` answers.
 */
export async function startPrometheus(jobs: Readonly<Record<string, readonly string[]>>): Promise<TestPrometheus> {
  const bin = await prometheusBinary();
  const dir = mkdtempSync(join(tmpdir(), "fabric-prometheus-"));
  const config = [
    "global:",
    "  scrape_interval: 1s",
    "  scrape_timeout: 900ms",
    "  evaluation_interval: 1s",
    "scrape_configs:",
    ...Object.entries(jobs).flatMap(([job, targets]) => [`  - job_name: ${JSON.stringify(job)}`, "    static_configs:", `      - targets: ${JSON.stringify(targets)}`]),
    "",
  ].join("\n");
  writeFileSync(join(dir, "prometheus.yml"), config);
  let child: ChildProcess | undefined;
  let url = "";
  let log = "";
  for (let attempt = 1; child === undefined; attempt++) {
    const [port] = await pickFreePorts(1);
    url = `http://127.0.0.1:${port}`;
    const c = spawn(bin, [`--config.file=${join(dir, "prometheus.yml")}`, `--storage.tsdb.path=${join(dir, "data")}`, `--web.listen-address=127.0.0.1:${port}`], { stdio: ["ignore", "ignore", "pipe"] });
    log = "";
    c.stderr?.on("data", (d: Buffer) => (log += d.toString()));
    const exited = new Promise<void>((resolve) => c.once("exit", () => resolve()));
    let gone = false;
    void exited.then(() => (gone = true));
    try {
      await pollUntil(
        async () => {
          if (gone) throw new Error(`prometheus exited:\n${log}`);
          return (await fetch(`${url}/-/ready`)).ok;
        },
        { timeoutMs: 30_000, intervalMs: 100, what: "prometheus ready" },
      );
      child = c;
    } catch (err) {
      c.kill("SIGKILL");
      await exited;
      if (attempt >= 3 || !/address already in use/.test(log)) {
        rmSync(dir, { recursive: true, force: true });
        throw err;
      }
    }
  }
  const proc = child;
  const query = async (promql: string): Promise<{ metric: Record<string, string>; value: number }[]> => {
    const res = await fetch(`${url}/api/v1/query?query=${encodeURIComponent(promql)}`);
    const body = queryResponseSchema.parse(await res.json());
    return body.data.result.map((r) => ({ metric: r.metric, value: Number(r.value[1]) }));
  };
  return {
    url,
    query,
    scalar: async (promql) => (await query(promql)).reduce((a, r) => a + r.value, 0),
    stop: async () => {
      if (proc.exitCode === null && proc.signalCode === null) {
        const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
        proc.kill("SIGTERM");
        const timer = setTimeout(() => proc.kill("SIGKILL"), 5_000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
