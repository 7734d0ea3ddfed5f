import type { Command } from "commander";
import { addMetricsOptions, createLogger, DEFAULT_SINK_METRICS_PORT, InvalidInputError, out, outJson, say, startMetricsFromFlags, untilSignal, type MetricsFlags } from "../core/index.js";
import { postgresSinkConfigSchema, redactUrl, removeSink, SINK_STREAMS, sinkDefinitions, sinkStatus, startPostgresSink, type PostgresSinkConfigInput, type SinkDefinition, type SinkStatus } from "../../sink/index.js";
import { readDefinitionFile } from "./definition-file.js";
import { tenantConnection, withConnection, withTenant, type ConnFlags } from "./tenant.js";

/** The environment variable a database URL may come from instead of --url (which `ps` shows, password included). */
export const SINK_URL_ENV = "FABRIC_SINK_PG_URL";

interface PostgresSinkFlags extends ConnFlags, MetricsFlags {
  url?: string;
  streams: string;
  tablePrefix?: string;
  name?: string;
  batch?: string;
  partition?: string;
  retentionDays?: string;
  compressAfterDays?: string;
}

const FLAG_OF: Readonly<Record<string, string>> = { url: "--url", streams: "--streams", tablePrefix: "--table-prefix", name: "--name", maxBatch: "--batch", partition: "--partition", retentionDays: "--retention-days", compressAfterDays: "--compress-after-days" };
const num = (v: string | undefined): number | undefined => (v === undefined ? undefined : Number(v));

/** The flags as the sink's config, validated once: a problem names its flag (exit code 2), never the URL's password. */
function configFromFlags(flags: PostgresSinkFlags): PostgresSinkConfigInput {
  const input = {
    url: flags.url ?? process.env[SINK_URL_ENV] ?? "",
    streams: flags.streams.split(",").map((s) => s.trim()).filter((s) => s !== ""),
    ...(flags.tablePrefix === undefined ? {} : { tablePrefix: flags.tablePrefix }),
    ...(flags.name === undefined ? {} : { name: flags.name }),
    ...(flags.batch === undefined ? {} : { maxBatch: num(flags.batch) }),
    ...(flags.partition === undefined ? {} : { partition: flags.partition }),
    ...(flags.retentionDays === undefined ? {} : { retentionDays: num(flags.retentionDays) }),
    ...(flags.compressAfterDays === undefined ? {} : { compressAfterDays: num(flags.compressAfterDays) }),
  };
  const r = postgresSinkConfigSchema.safeParse(input);
  if (r.success) return r.data;
  const problems = r.error.issues.map((i) => `${FLAG_OF[String(i.path[0])] ?? String(i.path[0])}${i.path.length > 1 ? `[${i.path.slice(1).join(".")}]` : ""}: ${i.message}`);
  throw new InvalidInputError(`invalid flags: ${problems.join("; ")}`);
}

/** `fabric sink postgres`, and `fabric sinks add|ls|describe|status|rm` (definitions the hub runs). */
export function addSinkCommands(program: Command): void {
  const sink = program.command("sink").description("sinks: the fabric's streams into a database, exactly once");
  addMetricsOptions(withConnection(sink.command("postgres").description("write streams into PostgreSQL (TimescaleDB when installed) until Ctrl-C")), DEFAULT_SINK_METRICS_PORT)
    .option("--url <url>", `postgres://user:password@host:port/db (default: $${SINK_URL_ENV})`)
    .option("--streams <list>", `comma-separated: ${SINK_STREAMS.join(",")}`, SINK_STREAMS.join(","))
    .option("--table-prefix <prefix>", "prefix of the table names (default fabric_)")
    .option("--name <name>", "the sink's name: its durable consumers are sink-<name>-<stream> (default postgres)")
    .option("--batch <n>", "messages per transaction, at most (default 5000)")
    .option("--partition <interval>", "day or month: native partitions (or TimescaleDB chunks) per interval (default day)")
    .option("--retention-days <n>", "drop partitions (TimescaleDB: chunks) older than this many days; 0 keeps everything (default 0)")
    .option("--compress-after-days <n>", "TimescaleDB community edition: compress chunks older than this many days; 0 never (default 7)")
    .action(async (flags: PostgresSinkFlags) => {
      const config = configFromFlags(flags);
      const logger = createLogger({ name: "fabric-sink" });
      const nc = await tenantConnection(flags);
      const running = await startPostgresSink({ nc, logger, ...config }).catch(async (err: unknown) => {
        await nc.close();
        throw err;
      });
      const metrics = await startMetricsFromFlags(flags, logger, DEFAULT_SINK_METRICS_PORT).catch(async (err: unknown) => {
        await running.stop();
        await nc.close();
        throw err;
      });
      say(`postgres sink running into ${redactUrl(running.config.url)} (${running.config.streams.join(", ")})${metrics === undefined ? "" : `; metrics ${metrics.url}`}; Ctrl-C stops it`);
      await untilSignal(async () => {
        await running.stop();
        await nc.drain();
        await metrics?.stop();
      });
    });
  addSinkDefinitionCommands(program);
}

/** A definition as shown: the URL redacted (it holds no password, but a hand-written KV entry might). */
const shown = (d: SinkDefinition): SinkDefinition => ({ ...d, url: redactUrl(d.url) });
const passwordSource = (d: SinkDefinition): string => (d.passwordFile !== undefined ? `file ${d.passwordFile}` : d.passwordEnv !== undefined ? `env ${d.passwordEnv}` : "none");

function statusText(st: SinkStatus): string {
  const lines = [`${st.name}: ${st.url}, ${st.runners.length} process(es) running it${st.runners.length === 0 ? " (no hub process runs it now)" : ""}`];
  for (const c of st.consumers) lines.push(`  ${c.stream}\t${c.consumer}\t${c.exists ? `pending ${c.pending ?? "?"}, ack pending ${c.ackPending ?? "?"}` : "(no consumer yet)"}`);
  for (const r of st.runners) {
    lines.push(`  runner ${r.runner} (${r.at}): ${r.state}${r.error === undefined ? "" : `: ${r.error}`}`);
    for (const s of r.streams) lines.push(`    ${s.stream}\t${s.role}\tdatabase ${s.database}\twritten ${s.written}\trejected ${s.rejected}\tlast batch ${s.lastBatchAt ?? "-"}${s.lastError === undefined ? "" : `\tlast error: ${s.lastError}`}`);
  }
  return lines.join("\n");
}

function addSinkDefinitionCommands(program: Command): void {
  const sinks = program.command("sinks").description("sinks the hub runs (definitions kept in KV sink_defs, run by `fabric up` / `fabric serve`)");
  withConnection(sinks.command("add <file>").description("add or replace a sink definition from a JSON or YAML file (the URL without password: passwordFile or passwordEnv names it)")).action(
    async (file: string, flags: ConnFlags) => {
      const input = readDefinitionFile(file);
      await withTenant(flags, async (nc) => {
        const def = await sinkDefinitions.save(nc, input);
        say(`sink ${def.name} saved; the hub's processes start it at once`);
      });
    },
  );
  withConnection(sinks.command("ls").description("list sink definitions (URLs redacted)").option("--json", "JSON output")).action(async (flags: ConnFlags & { json?: boolean }) => {
    await withTenant(flags, async (nc) => {
      const defs = (await sinkDefinitions.list(nc)).map(shown);
      if (flags.json === true) outJson(defs);
      else out(defs.map((d) => `${d.name}\t${d.kind}\t${d.url}\t${d.streams.join(",")}\t${d.tablePrefix}\tpassword: ${passwordSource(d)}`).join("\n"));
    });
  });
  withConnection(sinks.command("describe <name>").description("show a sink definition (URL redacted)").option("--json", "JSON output")).action(async (name: string, flags: ConnFlags & { json?: boolean }) => {
    await withTenant(flags, async (nc) => {
      const def = await sinkDefinitions.get(nc, name);
      if (def === undefined) throw new InvalidInputError(`no sink ${JSON.stringify(name)}`);
      if (flags.json === true) outJson(shown(def));
      else out(Object.entries({ ...shown(def), password: passwordSource(def) }).map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(", ") : String(v)}`).join("\n"));
    });
  });
  withConnection(sinks.command("status [name]").description("per sink and stream: the consumer's lag, and what each process running it reports").option("--json", "JSON output")).action(
    async (name: string | undefined, flags: ConnFlags & { json?: boolean }) => {
      await withTenant(flags, async (nc) => {
        const defs = (await sinkDefinitions.list(nc)).filter((d) => name === undefined || d.name === name);
        if (name !== undefined && defs.length === 0) throw new InvalidInputError(`no sink ${JSON.stringify(name)}`);
        const all: SinkStatus[] = [];
        for (const d of defs) all.push(await sinkStatus(nc, d));
        if (flags.json === true) outJson(all);
        else out(all.map(statusText).join("\n"));
      });
    },
  );
  withConnection(sinks.command("rm <name>").description("remove a sink definition: the hub's processes stop it, then its consumers are deleted")).action(async (name: string, flags: ConnFlags) => {
    await withTenant(flags, async (nc) => {
      const r = await removeSink(nc, name);
      if (!r.removed) throw new InvalidInputError(`no sink ${JSON.stringify(name)}`);
      say(r.consumersDeleted ? `sink ${name} removed, its consumers deleted` : `sink ${name} removed; a process still reported it, so its consumers are left (delete them with nats consumer rm)`);
    });
  });
}
