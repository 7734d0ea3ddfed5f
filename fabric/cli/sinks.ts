import type { Command } from "commander";
import { createLogger, InvalidInputError, say, untilSignal } from "../core/index.js";
import { postgresSinkConfigSchema, redactUrl, SINK_STREAMS, startPostgresSink, type PostgresSinkConfigInput } from "../../sink/index.js";
import { tenantConnection, withConnection, type ConnFlags } from "./tenant.js";

/** The environment variable a database URL may come from instead of --url (which `ps` shows, password included). */
export const SINK_URL_ENV = "FABRIC_SINK_PG_URL";

interface PostgresSinkFlags extends ConnFlags {
  url?: string;
  streams: string;
  tablePrefix?: string;
  name?: string;
  batch?: string;
  partition?: string;
  retentionDays?: string;
}

const FLAG_OF: Readonly<Record<string, string>> = { url: "--url", streams: "--streams", tablePrefix: "--table-prefix", name: "--name", maxBatch: "--batch", partition: "--partition", retentionDays: "--retention-days" };
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
  };
  const r = postgresSinkConfigSchema.safeParse(input);
  if (r.success) return r.data;
  const problems = r.error.issues.map((i) => `${FLAG_OF[String(i.path[0])] ?? String(i.path[0])}${i.path.length > 1 ? `[${i.path.slice(1).join(".")}]` : ""}: ${i.message}`);
  throw new InvalidInputError(`invalid flags: ${problems.join("; ")}`);
}

/** `fabric sink postgres`. */
export function addSinkCommands(program: Command): void {
  const sink = program.command("sink").description("sinks: the fabric's streams into a database, exactly once");
  withConnection(sink.command("postgres").description("write streams into PostgreSQL (TimescaleDB when installed) until Ctrl-C"))
    .option("--url <url>", `postgres://user:password@host:port/db (default: $${SINK_URL_ENV})`)
    .option("--streams <list>", `comma-separated: ${SINK_STREAMS.join(",")}`, SINK_STREAMS.join(","))
    .option("--table-prefix <prefix>", "prefix of the table names (default fabric_)")
    .option("--name <name>", "the sink's name: its durable consumers are sink-<name>-<stream> (default postgres)")
    .option("--batch <n>", "messages per transaction (default 1000)")
    .option("--partition <interval>", "day or month: native partitions (or TimescaleDB chunks) per interval (default day)")
    .option("--retention-days <n>", "drop partitions older than this many days; 0 keeps everything (default 0)")
    .action(async (flags: PostgresSinkFlags) => {
      const config = configFromFlags(flags);
      const logger = createLogger({ name: "fabric-sink" });
      const nc = await tenantConnection(flags);
      const running = await startPostgresSink({ nc, logger, ...config }).catch(async (err: unknown) => {
        await nc.close();
        throw err;
      });
      say(`postgres sink running into ${redactUrl(running.config.url)} (${running.config.streams.join(", ")}); Ctrl-C stops it`);
      await untilSignal(async () => {
        await running.stop();
        await nc.drain();
      });
    });
}
