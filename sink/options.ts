import { z } from "zod";
import { TOKEN_PATTERN } from "../fabric/core/index.js";

/** The streams a sink can write, by the name of their table. */
export const SINK_STREAMS = ["telemetry", "aggregates", "events"] as const;
export type SinkStream = (typeof SINK_STREAMS)[number];

export const DEFAULT_SINK_NAME = "postgres";
export const DEFAULT_TABLE_PREFIX = "fabric_";
export const DEFAULT_MAX_BATCH = 5_000; // messages per transaction, at most (group commit: what came while the last was written)
export const DEFAULT_ACK_WAIT_MS = 30_000; // 30 s
export const DEFAULT_RETRY_MIN_MS = 100; // 100 ms
export const DEFAULT_RETRY_MAX_MS = 5_000; // 5 s
export const DEFAULT_RETENTION_CHECK_MS = 3_600_000; // 1 h

function isPostgresUrl(text: string): boolean {
  try {
    const u = new URL(text);
    return (u.protocol === "postgres:" || u.protocol === "postgresql:") && u.hostname !== "";
  } catch {
    return false;
  }
}

/** A URL for logs: the password replaced. */
export function redactUrl(text: string): string {
  try {
    const u = new URL(text);
    if (u.password !== "") u.password = "***";
    return u.toString();
  } catch {
    return "(unparsable url)";
  }
}

/**
 * What a PostgreSQL sink is told (the CLI's flags, later a sink definition in KV). zod messages never repeat the
 * value, so a refused URL's password does not reach an error message.
 */
export const postgresSinkConfigSchema = z.strictObject({
  url: z.string().refine(isPostgresUrl, "must be a postgres:// or postgresql:// URL with a host"),
  /** Names the sink's durable consumers (`sink-<name>-<stream>`): two sinks into two databases need two names. */
  name: z.string().regex(TOKEN_PATTERN, "must be a token: lowercase letters, digits, _ and -").default(DEFAULT_SINK_NAME),
  streams: z.array(z.enum(SINK_STREAMS)).min(1, "needs at least one stream").default([...SINK_STREAMS]),
  tablePrefix: z.string().regex(/^[a-z_][a-z0-9_]{0,29}$/, "must be a lowercase SQL name of at most 30 characters (letters, digits, _)").default(DEFAULT_TABLE_PREFIX),
  maxBatch: z.number().int().min(1).max(10_000).default(DEFAULT_MAX_BATCH),
  ackWaitMs: z.number().int().min(1_000).default(DEFAULT_ACK_WAIT_MS),
  /** Native partitioning's interval (TimescaleDB: the chunk interval). */
  partition: z.enum(["day", "month"]).default("day"),
  /** Partitions (chunks) wholly older than this many days are dropped; 0 keeps everything. */
  retentionDays: z.number().int().min(0).default(0),
  retentionCheckMs: z.number().int().min(1_000).default(DEFAULT_RETENTION_CHECK_MS),
  /** TimescaleDB only: chunks older than this many days are compressed; 0 never. */
  compressAfterDays: z.number().int().min(0).default(7),
  retryMinMs: z.number().int().min(1).default(DEFAULT_RETRY_MIN_MS),
  retryMaxMs: z.number().int().min(1).default(DEFAULT_RETRY_MAX_MS),
});
export type PostgresSinkConfig = Readonly<z.infer<typeof postgresSinkConfigSchema>>;
export type PostgresSinkConfigInput = z.input<typeof postgresSinkConfigSchema>;
