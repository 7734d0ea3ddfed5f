import type { JsMsg } from "@nats-io/jetstream";
import { messagePayload, type AckSubject } from "../fabric/core/index.js";
import { isoTime, jsonObject, row, validTimeMs, type ParsedMessage, type TableSpec } from "./table-spec.js";

const COLUMNS = [
  { name: "window_name", type: "text NOT NULL" },
  { name: "key", type: "text NOT NULL" },
  { name: "key_parts", type: "text[] NOT NULL" },
  { name: "site", type: "text" },
  { name: "device", type: "text" },
  { name: "metric", type: "text" },
  { name: "window_start", type: "timestamptz NOT NULL" },
  { name: "window_end", type: "timestamptz NOT NULL" },
  { name: "revision", type: "integer NOT NULL" },
  { name: "kind", type: "text NOT NULL" },
  { name: "count", type: "bigint NOT NULL" },
  { name: "empty", type: "boolean NOT NULL" },
  { name: "aggregates", type: "jsonb NOT NULL" },
  { name: "stream_seq", type: "bigint NOT NULL" },
] as const;

/** Fields of a window result that have columns of their own; the rest are the aggregates. */
const OWN_FIELDS = new Set(["window", "key", "start", "end", "revision", "kind", "count", "empty", "states"]);
const KINDS = new Set(["final", "early", "revision"]);

/** A PostgreSQL array literal of texts. */
function textArray(values: readonly string[]): string {
  return `{${values.map((v) => `"${v.replace(/[\\"]/g, (c) => `\\${c}`)}"`).join(",")}}`;
}

/** `agg.<window>.<key tokens>` with a window result (streams/worker.ts). */
function parse(m: JsMsg, delivery: Readonly<AckSubject>): ParsedMessage {
  const body = jsonObject(messagePayload(m));
  if (body === undefined) return { reject: "sink: window result is not a JSON object" };
  const { window, key, start, end, revision, kind, count } = body;
  if (typeof window !== "string" || typeof key !== "string" || !validTimeMs(start) || !validTimeMs(end)) return { reject: "sink: window result needs window, key, start and end" };
  if (typeof revision !== "number" || !Number.isInteger(revision) || typeof kind !== "string" || !KINDS.has(kind) || typeof count !== "number" || !Number.isInteger(count)) {
    return { reject: "sink: window result needs an integer revision and count and a kind (final, early, revision)" };
  }
  const parts = key.split(".");
  const named = parts.length === 3 ? parts : [null, null, null];
  const aggregates = Object.fromEntries(Object.entries(body).filter(([k]) => !OWN_FIELDS.has(k)));
  return row([window, key, textArray(parts), named[0] ?? null, named[1] ?? null, named[2] ?? null, isoTime(start), isoTime(end), revision, kind, count, body["empty"] === true, JSON.stringify(aggregates), delivery.streamSeq], start);
}

/** Orders results of one window: a higher revision, then final over early, then the later message. */
const RANK = (t: string): string => `(${t}.revision, ${t}.kind <> 'early', ${t}.stream_seq)`;

/**
 * Upsert on (window_name, key, window_start) keeping the highest-ranked result; within a batch only the best
 * row per window goes in (ON CONFLICT DO UPDATE may touch a row once per statement).
 */
function mergeSql(table: string, stage: string): string {
  const cols = COLUMNS.map((c) => c.name);
  const updates = cols.filter((c) => !["window_name", "key", "window_start"].includes(c)).map((c) => `${c} = EXCLUDED.${c}`);
  return [
    `INSERT INTO ${table} AS t (${cols.join(", ")})`,
    `SELECT DISTINCT ON (window_name, key, window_start) ${cols.join(", ")} FROM ${stage} s`,
    `ORDER BY window_name, key, window_start, revision DESC, kind <> 'early' DESC, stream_seq DESC`,
    `ON CONFLICT (window_name, key, window_start) DO UPDATE SET ${updates.join(", ")}`,
    `WHERE ${RANK("t")} < ${RANK("EXCLUDED")}`,
  ].join(" ");
}

export const AGGREGATES_TABLE: TableSpec = {
  stream: "aggregates",
  jsStream: "AGGREGATES",
  columns: COLUMNS,
  timeColumn: "window_start",
  uniqueKey: ["window_name", "key", "window_start"],
  indexes: [["site", "device", "metric", "window_start"]],
  segmentBy: ["window_name", "key"],
  parse,
  mergeSql,
  appendOnly: false,
};
