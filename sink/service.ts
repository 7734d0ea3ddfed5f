import { hostname } from "node:os";
import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { errorMessage, pollUntil, type Logger } from "../fabric/core/index.js";
import { definitionStore, kvKeys, SINK_DEFINITIONS_BUCKET, SINK_STATUS_BUCKET } from "../streams/index.js";
import { sinkConfigOf, sinkDefinitionSchema, type SinkDefinition } from "./definition.js";
import { redactUrl } from "./options.js";
import { startPostgresSink, TABLE_SPECS, type PostgresSink } from "./postgres-sink.js";
import { consumerName, type StreamSinkStatus } from "./stream-sink.js";

/** How often a process running sinks reports their status into KV `sink_status` (entries expire after 15 s). */
export const DEFAULT_SINK_STATUS_EVERY_MS = 5_000; // 5 s

/** Sink definitions in KV `sink_defs`: `fabric sinks add|ls|describe|rm`, followed by `runDefinedSinks`. */
export const sinkDefinitions = definitionStore(SINK_DEFINITIONS_BUCKET, sinkDefinitionSchema, "sink");

/** What one process running a sink reports (KV `sink_status`, key `<sink>.<runner>`). */
export interface SinkRunnerReport {
  runner: string;
  sink: string;
  /** ISO time of the report. */
  at: string;
  /** `failed`: the sink could not start (its password missing, JetStream refused its consumers); retried at each report. */
  state: "running" | "failed";
  error?: string | undefined;
  streams: StreamSinkStatus[];
}

export interface RunDefinedSinksOptions {
  /** This process's name in status reports (default `<host>-<pid>`). */
  runnerId?: string;
  statusEveryMs?: number;
  /** Where `passwordEnv` is read (default process.env). */
  env?: NodeJS.ProcessEnv;
}

interface Running {
  json: string;
  def: SinkDefinition;
  sink: PostgresSink | undefined;
  error: string | undefined;
}

const runnerToken = (s: string): string => s.replace(/[^A-Za-z0-9_-]/g, "_");

/**
 * Runs every sink defined in KV `sink_defs` and follows the bucket: a new definition starts, a changed one
 * restarts, a removed one stops. Each sink's status is put into KV `sink_status` every statusEveryMs. Several
 * processes may run one sink: per stream one of them holds the claim on the table and writes, the others stand
 * by and take over from the position in the database (StreamSink).
 */
export async function runDefinedSinks(nc: NatsConnection, logger: Logger, options: RunDefinedSinksOptions = {}): Promise<{ stop(): Promise<void> }> {
  const log = logger.child({ component: "sinks" });
  const runner = runnerToken(options.runnerId ?? `${hostname()}-${process.pid}`);
  const statusKv: KV = await new Kvm(nc).open(SINK_STATUS_BUCKET);
  const running = new Map<string, Running>();
  let chain: Promise<void> = Promise.resolve();
  const serially = (fn: () => Promise<void>): Promise<void> => (chain = chain.then(fn).catch((err: unknown) => log.error({ err: errorMessage(err) }, "sinks: not applied")));

  const start = async (r: Running): Promise<void> => {
    try {
      r.sink = await startPostgresSink({ nc, logger, ...sinkConfigOf(r.def, options.env) });
      r.error = undefined;
    } catch (err) {
      if (r.error === undefined) log.error({ sink: r.def.name, err: errorMessage(err) }, "sink did not start; trying again at each status report");
      r.error = errorMessage(err);
    }
  };
  const stopOne = async (name: string, r: Running): Promise<void> => {
    running.delete(name);
    await r.sink?.stop().catch((err: unknown) => log.warn({ sink: name, err: errorMessage(err) }, "sink stop failed"));
    await statusKv.delete(`${name}.${runner}`).catch(() => undefined);
    log.info({ sink: name }, "sink stopped");
  };
  const report = async (): Promise<void> => {
    for (const [name, r] of running) {
      if (r.sink === undefined) await start(r);
      const body: SinkRunnerReport = { runner, sink: name, at: new Date().toISOString(), state: r.sink === undefined ? "failed" : "running", error: r.error, streams: r.sink === undefined ? [] : await r.sink.status() };
      await statusKv.put(`${name}.${runner}`, JSON.stringify(body)).catch((err: unknown) => log.debug({ sink: name, err: errorMessage(err) }, "sink status not stored"));
    }
  };
  const apply = async (defs: readonly SinkDefinition[]): Promise<void> => {
    const wanted = new Map(defs.map((d) => [d.name, d]));
    for (const [name, r] of [...running]) if (wanted.get(name) === undefined || JSON.stringify(wanted.get(name)) !== r.json) await stopOne(name, r);
    for (const def of defs) {
      if (running.has(def.name)) continue;
      const r: Running = { json: JSON.stringify(def), def, sink: undefined, error: undefined };
      running.set(def.name, r);
      await start(r);
    }
    await report();
  };

  const following = await sinkDefinitions.follow(nc, log, (defs) => serially(() => apply(defs)));
  const timer = setInterval(() => void serially(report), options.statusEveryMs ?? DEFAULT_SINK_STATUS_EVERY_MS);
  timer.unref();
  return {
    stop: async () => {
      clearInterval(timer);
      await following.stop();
      await serially(async () => {
        for (const [name, r] of [...running]) await stopOne(name, r);
      });
    },
  };
}

/** A consumer of a sink's, as JetStream has it (absent: no process has run the sink on that stream yet, or it was removed). */
export interface SinkConsumerStatus {
  stream: string;
  consumer: string;
  exists: boolean;
  /** Messages the sink has not had yet (num_pending), and delivered but not yet acknowledged. */
  pending: number | undefined;
  ackPending: number | undefined;
}

export interface SinkStatus {
  name: string;
  /** The URL, password redacted (a definition holds none, but an old one might). */
  url: string;
  consumers: SinkConsumerStatus[];
  /** The live reports of the processes running it (none: no hub process runs it now). */
  runners: SinkRunnerReport[];
}

/** What `fabric sinks status` shows: the consumers' lag from JetStream, and the reports of the processes running the sink. */
export async function sinkStatus(nc: NatsConnection, def: SinkDefinition): Promise<SinkStatus> {
  const jsm = await jetstreamManager(nc);
  const consumers: SinkConsumerStatus[] = [];
  for (const s of def.streams) {
    const spec = TABLE_SPECS[s];
    const consumer = consumerName(def, spec);
    const info = await jsm.consumers.info(spec.jsStream, consumer).catch(() => undefined);
    consumers.push({ stream: spec.jsStream, consumer, exists: info !== undefined, pending: info?.num_pending, ackPending: info?.num_ack_pending });
  }
  const kv = await new Kvm(nc).open(SINK_STATUS_BUCKET);
  const runners: SinkRunnerReport[] = [];
  for (const k of await kvKeys(jsm, SINK_STATUS_BUCKET, `${def.name}.*`)) {
    const e = await kv.get(k);
    if (e?.operation !== "PUT") continue;
    try {
      runners.push(e.json<SinkRunnerReport>());
    } catch {
      // not a report: skipped
    }
  }
  return { name: def.name, url: redactUrl(def.url), consumers, runners: runners.sort((a, b) => a.runner.localeCompare(b.runner)) };
}

/** How long `removeSink` waits for the processes running the sink to stop before deleting its consumers. */
export const DEFAULT_REMOVE_WAIT_MS = 15_000; // 15 s

/**
 * Removes a sink's definition (the processes running it stop) and, once no process reports it any more, its
 * durable consumers, so nothing keeps its position (added again, it starts from the streams' first message, and
 * the unique keys drop what the table has). Returns false if there was no such sink; `consumersDeleted` is
 * false when a process still reported it after waitMs (its consumers are left for it).
 */
export async function removeSink(nc: NatsConnection, name: string, options: { waitMs?: number } = {}): Promise<{ removed: boolean; consumersDeleted: boolean }> {
  const def = await sinkDefinitions.get(nc, name);
  if (!(await sinkDefinitions.remove(nc, name)) || def === undefined) return { removed: false, consumersDeleted: false };
  const jsm = await jetstreamManager(nc);
  const stopped = await pollUntil(async () => (await statusEntries(nc, await kvKeys(jsm, SINK_STATUS_BUCKET, `${name}.*`))) === 0, {
    timeoutMs: options.waitMs ?? DEFAULT_REMOVE_WAIT_MS,
    intervalMs: 100,
    what: `the processes running sink ${name} to stop`,
  }).catch(() => false);
  if (!stopped) return { removed: true, consumersDeleted: false };
  for (const s of def.streams) await jsm.consumers.delete(TABLE_SPECS[s].jsStream, consumerName(def, TABLE_SPECS[s])).catch(() => false);
  return { removed: true, consumersDeleted: true };
}

/** How many of these `sink_status` keys hold a report (a stopped runner's key holds a delete marker). */
async function statusEntries(nc: NatsConnection, keys: readonly string[]): Promise<number> {
  const kv = await new Kvm(nc).open(SINK_STATUS_BUCKET);
  let n = 0;
  for (const k of keys) if ((await kv.get(k))?.operation === "PUT") n++;
  return n;
}
