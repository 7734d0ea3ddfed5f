import type { JsMsg } from "@nats-io/jetstream";
import type { AckSubject } from "../fabric/core/index.js";
import { csvLine } from "./copy-csv.js";
import type { SinkStream } from "./options.js";

/** A value of one column as COPY receives it (text form); null is SQL NULL. */
export type CellValue = string | number | boolean | null;

export interface Column {
  name: string;
  /** SQL type, as in CREATE TABLE */
  type: string;
}

/** A row as COPY (FORMAT csv) reads it: one CSV line, and the time it is partitioned by. */
export interface Row {
  line: string;
  timeMs: number;
}

/** A message made into a row, or the reason it cannot be one (it goes to REJECTED). */
export type ParsedMessage = Row | { reject: string };

/** A row of `cells` (in the spec's column order) at `timeMs`. */
export const row = (cells: readonly CellValue[], timeMs: number): Row => ({ line: csvLine(cells), timeMs });

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
  /** `delivery`: the message's reply subject read (stream sequence, time stored). */
  parse(m: JsMsg, delivery: Readonly<AckSubject>): ParsedMessage;
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
  const v = json(data);
  return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}

/** A payload's JSON value, or undefined when it is not JSON (read in place: no copy of the bytes). */
export function json(data: Uint8Array): unknown {
  try {
    return JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("utf8")) as unknown;
  } catch {
    return undefined;
  }
}

/** The last second isoTime formatted: readings come in time order, so most share it and need no Date. */
let isoSecond = Number.NaN;
let isoPrefix = "";

/** `ms` as ISO 8601 UTC with milliseconds (what Date's toISOString gives). */
export function isoTime(ms: number): string {
  const whole = Math.floor(ms);
  const second = Math.floor(whole / 1000);
  if (second !== isoSecond) {
    const text = new Date(second * 1000).toISOString();
    // years past 9999 are refused before this (validTimeMs); the prefix is everything up to the milliseconds
    isoPrefix = text.slice(0, text.length - 4);
    isoSecond = second;
  }
  const frac = whole - second * 1000;
  return `${isoPrefix}${frac < 10 ? "00" : frac < 100 ? "0" : ""}${frac}Z`;
}

/** The plain INSERT … SELECT … ON CONFLICT DO NOTHING of append-only tables. */
export function insertIgnoringSql(columns: readonly Column[], table: string, stage: string): string {
  const cols = columns.map((c) => c.name).join(", ");
  return `INSERT INTO ${table} (${cols}) SELECT ${cols} FROM ${stage} ON CONFLICT DO NOTHING`;
}
