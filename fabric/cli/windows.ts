import type { Command } from "commander";
import { addMetricsOptions, assertToken, createLogger, DEFAULT_WORKER_METRICS_PORT, initTracing, InvalidInputError, out, outJson, say, startMetricsFromFlags, untilSignal, type MetricsFlags } from "../core/index.js";
import { DEFAULT_CHECKPOINT_EVERY_MS, listDefinitions, removeDefinition, runDefinedWorkers, saveDefinition, windowStatus } from "../../streams/index.js";
import { readDefinitionFile } from "./definition-file.js";
import { tenantConnection, withConnection, withTenant, type ConnFlags } from "./tenant.js";

/** `fabric windows add|ls|rm|describe` and `fabric worker`. */
export function addWindowCommands(program: Command): void {
  const windows = program.command("windows").description("windowed aggregations (definitions kept in KV, seen by every worker)");
  withConnection(windows.command("add <file>").description("add or replace a window definition from a JSON or YAML file")).action(async (file: string, flags: ConnFlags) => {
    const input = readDefinitionFile(file);
    await withTenant(flags, async (nc) => {
      const def = await saveDefinition(nc, input);
      say(`window ${def.name} saved; workers pick it up at once`);
    });
  });
  withConnection(windows.command("ls").description("list window definitions").option("--json", "JSON output")).action(async (flags: ConnFlags & { json?: boolean }) => {
    await withTenant(flags, async (nc) => {
      const defs = await listDefinitions(nc);
      if (flags.json === true) outJson(defs);
      else out(defs.map((d) => `${d.name}\t${d.window.kind}\t${d.source.filter}\t${d.aggregates.join(",")}`).join("\n"));
    });
  });
  withConnection(windows.command("describe <name>").description("show a window definition")).action(async (name: string, flags: ConnFlags) => {
    await withTenant(flags, async (nc) => {
      const def = (await listDefinitions(nc)).find((d) => d.name === name);
      if (def === undefined) throw new InvalidInputError(`no window ${JSON.stringify(name)}`);
      outJson(def);
    });
  });
  withConnection(windows.command("status [name]").description("partition owners, checkpoint positions and how far behind each window is").option("--json", "JSON output")).action(
    async (name: string | undefined, flags: ConnFlags & { json?: boolean }) => {
      await withTenant(flags, async (nc) => {
        const defs = (await listDefinitions(nc)).filter((d) => name === undefined || d.name === name);
        if (name !== undefined && defs.length === 0) throw new InvalidInputError(`no window ${JSON.stringify(name)}`);
        const all = [];
        for (const d of defs) all.push(await windowStatus(nc, d));
        if (flags.json === true) outJson(all);
        else
          out(
            all
              .map((w) =>
                [`${w.name}: ${w.members.length} worker(s) [${w.members.join(", ")}], ${w.behind} behind`, ...w.partitions.map((p) => `  p${p.partition}\t${p.owner === "" ? "(unowned)" : p.owner}\tseq ${p.seq}`)].join("\n"),
              )
              .join("\n"),
          );
      });
    },
  );
  withConnection(windows.command("rm <name>").description("remove a window definition (its workers stop)")).action(async (name: string, flags: ConnFlags) => {
    await withTenant(flags, async (nc) => {
      if (!(await removeDefinition(nc, name))) throw new InvalidInputError(`no window ${JSON.stringify(name)}`);
      say(`window ${name} removed`);
    });
  });
  addMetricsOptions(withConnection(program.command("worker").description("run window workers for every definition, as a process of its own (several share the partitions)")), DEFAULT_WORKER_METRICS_PORT)
    .option("--member <id>", "static membership: a worker restarted with the same id takes its partitions back at once (never run two with one id)")
    .option("--checkpoint-every-ms <ms>", "checkpoint interval in ms: shorter means less to replay after a crash", String(DEFAULT_CHECKPOINT_EVERY_MS))
    .action(async (flags: ConnFlags & MetricsFlags & { checkpointEveryMs: string; member?: string }) => {
    const checkpointEveryMs = Number(flags.checkpointEveryMs);
    if (!Number.isInteger(checkpointEveryMs) || checkpointEveryMs < 10) throw new InvalidInputError(`--checkpoint-every-ms ${JSON.stringify(flags.checkpointEveryMs)} is not a whole number of milliseconds ≥ 10`);
    const logger = createLogger({ name: "fabric-worker" });
    const tracing = await initTracing({ serviceName: "fabric-worker", logger });
    const nc = await tenantConnection(flags);
    const runner = await runDefinedWorkers(nc, logger, { checkpointEveryMs, ...(flags.member === undefined ? {} : { memberId: assertToken(flags.member, "--member") }) });
    const metrics = await startMetricsFromFlags(flags, logger, DEFAULT_WORKER_METRICS_PORT).catch(async (err: unknown) => {
      await runner.stop();
      await nc.drain();
      throw err;
    });
    say(`window workers running${metrics === undefined ? "" : `; metrics ${metrics.url}`}; Ctrl-C stops them`);
    await untilSignal(async () => {
      await runner.stop();
      await nc.drain();
      await metrics?.stop();
      await tracing?.shutdown();
    });
  });
}
