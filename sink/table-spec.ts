import type { JsMsg } from "@nats-io/jetstream";
import type { SinkStream } from "./options.js";

/** A value of one column as COPY receives it (text form); null is SQL NULL. */
export type CellValue = string | number | boolean | null;

export interface Column {
  name: string;
  /** SQL type, as in CREATE TABLE */
  type: string;
}

/** A message made into a row, or the reason it cannot be one (it goes to REJECTED). */
export type ParsedMessage = { row: CellValue[]; timeMs: number } | { reject: string };

/** Everything about one stream's table: its columns, how a message becomes a row, and how rows are merged in. */
export interface TableSpec {
  stream: SinkStream;
  /** The JetStream stream read. */
  jsStream: string;
  /** Columns in COPY order; the same for the table and its staging table. */
  columns: readonly Column[];
  /** The time column the table is partitioned by (a hypertable's time dimension). */
  timeColumn: string;
  /** The unique key (it includes timeColumn, as a partitioned table's unique keys must). */
  uniqueKey: readonly string[];
  /** Extra indexes: column lists. */
  indexes: readonly (readonly string[])[];
  /** TimescaleDB compression's segment-by columns. */
  segmentBy: readonly string[];
  parse(m: JsMsg): ParsedMessage;
  /** INSERT … SELECT from `stage` into `table`, dropping (or merging) rows already there. */
  mergeSql(table: string, stage: string): string;
  /**
   * The merge only drops rows already there (ON CONFLICT DO NOTHING): a batch is then COPYed straight into the
   * table, and staged and merged only when that meets a row already stored (a redelivery after a crash).
   */
  appendOnly: boolean;
}

/** Event times past this (year 10000) are absurd: refused rather than partitions nobody wants. */
export const MAX_EVENT_TIME_MS = 253_402_300_800_000;

export function validTimeMs(ts: unknown): ts is number {
  return typeof ts === "number" && Number.isFinite(ts) && ts > 0 && ts < MAX_EVENT_TIME_MS;
}

/** A JSON object payload, or undefined when it is not one. */
export function jsonObject(data: Uint8Array): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(Buffer.from(data).toString("utf8"));
    return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

export const isoTime = (ms: number): string => new Date(ms).toISOString();

/** The plain INSERT … SELECT … ON CONFLICT DO NOTHING of append-only tables. */
export function insertIgnoringSql(columns: readonly Column[], table: string, stage: string): string {
  const cols = columns.map((c) => c.name).join(", ");
  return `INSERT INTO ${table} (${cols}) SELECT ${cols} FROM ${stage} ON CONFLICT DO NOTHING`;
}
