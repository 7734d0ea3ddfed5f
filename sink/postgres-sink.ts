import { jetstream } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { errorMessage, JetStreamPublisher, parseInput, type Logger } from "../fabric/core/index.js";
import { AGGREGATES_TABLE } from "./aggregates-table.js";
import { EVENTS_TABLE } from "./events-table.js";
import { postgresSinkConfigSchema, redactUrl, type PostgresSinkConfig, type PostgresSinkConfigInput, type SinkStream } from "./options.js";
import { sinkMetrics } from "./metrics.js";
import { runRetention } from "./retention.js";
import { StreamSink, type StreamSinkStatus } from "./stream-sink.js";
import type { TableSpec } from "./table-spec.js";
import { TELEMETRY_TABLE } from "./telemetry-table.js";

export const TABLE_SPECS: Readonly<Record<SinkStream, TableSpec>> = { telemetry: TELEMETRY_TABLE, aggregates: AGGREGATES_TABLE, events: EVENTS_TABLE };

export interface PostgresSinkOptions extends PostgresSinkConfigInput {
  /** A connection into the tenant account (the sink reads its streams and publishes to REJECTED). */
  nc: NatsConnection;
  logger: Logger;
}

export interface PostgresSink {
  readonly config: PostgresSinkConfig;
  /** Per stream: lag (the consumer's num_pending), rows written, rejected, whether the database is up. */
  status(): Promise<StreamSinkStatus[]>;
  /** Runs the retention job now (partitions older than retentionDays dropped); returns what it dropped. */
  runRetention(): Promise<string[]>;
  stop(): Promise<void>;
}

/**
 * Starts a sink of the fabric's streams into PostgreSQL: one durable consumer and one connection per stream,
 * each claiming its table in the background (tables created when first connected, so the sink starts, and
 * waits, while the database is down), the retention job every retentionCheckMs. `options` (but nc and logger) is validated with the sink's schema.
 */
export async function startPostgresSink(options: PostgresSinkOptions): Promise<PostgresSink> {
  const { nc, logger: parentLogger, ...input } = options;
  const config: PostgresSinkConfig = Object.freeze(parseInput(postgresSinkConfigSchema, input, "sink"));
  const logger = parentLogger.child({ sink: config.name });
  const specs = config.streams.map((s) => TABLE_SPECS[s]);
  const jsm = await jetstream(nc).jetstreamManager();
  const publisher = new JetStreamPublisher(nc);
  const sinks = specs.map((spec) => new StreamSink(nc, jsm, publisher, config, spec, logger));
  for (const s of sinks) s.start();
  logger.info({ url: redactUrl(config.url), streams: config.streams, tablePrefix: config.tablePrefix }, "postgres sink started");

  const retention = async (): Promise<string[]> => {
    const dropped = await runRetention(config, specs, logger);
    if (dropped.length > 0) for (const s of sinks) s.partitions.forget();
    return dropped;
  };
  const timer =
    config.retentionDays > 0
      ? setInterval(() => {
          retention().catch((err: unknown) => logger.warn({ err: errorMessage(err) }, "sink: retention job failed; trying again at the next interval"));
        }, config.retentionCheckMs)
      : undefined;
  timer?.unref();
  const unregister = sinkMetrics.register({
    sink: config.name,
    lag: () => Promise.all(sinks.map((s) => s.status())),
    databaseUp: () => sinks.every((s) => s.databaseUp),
  });
  return {
    config,
    status: () => Promise.all(sinks.map((s) => s.status())),
    runRetention: retention,
    stop: async () => {
      if (timer !== undefined) clearInterval(timer);
      unregister();
      await Promise.all(sinks.map((s) => s.stop()));
      publisher.close();
    },
  };
}
