import type { JsMsg } from "@nats-io/jetstream";
import { messagePayload, type AckSubject } from "../fabric/core/index.js";
import { insertIgnoringSql, isoTime, jsonObject, row, validTimeMs, type ParsedMessage, type TableSpec } from "./table-spec.js";

const COLUMNS = [
  { name: "time", type: "timestamptz NOT NULL" },
  { name: "site", type: "text NOT NULL" },
  { name: "device", type: "text NOT NULL" },
  { name: "metric", type: "text NOT NULL" },
  { name: "value", type: "double precision NOT NULL" },
  { name: "extra", type: "jsonb" },
  { name: "stream_seq", type: "bigint NOT NULL" },
] as const;

/** The payload's fields but value and ts, as JSON; null when there are none (the common case: no copy made). */
function extraOf(body: Record<string, unknown>): string | null {
  let extra: Record<string, unknown> | undefined;
  for (const k in body) {
    if (k === "value" || k === "ts") continue;
    (extra ??= {})[k] = body[k];
  }
  return extra === undefined ? null : JSON.stringify(extra);
}

/** `telemetry.<site>.<device>.<metric>` with `{"value": number, "ts": epoch ms, ...extra}`. */
function parse(m: JsMsg, delivery: Readonly<AckSubject>): ParsedMessage {
  const tokens = m.subject.split(".");
  if (tokens.length !== 4) return { reject: `sink: subject ${m.subject} is not telemetry.<site>.<device>.<metric>` };
  const body = jsonObject(messagePayload(m));
  if (body === undefined) return { reject: "sink: telemetry payload is not a JSON object" };
  const { value, ts } = body;
  if (typeof value !== "number" || !Number.isFinite(value)) return { reject: "sink: telemetry payload has no numeric value" };
  if (!validTimeMs(ts)) return { reject: "sink: telemetry payload has no numeric ts (epoch ms, before year 10000)" };
  return row([isoTime(ts), tokens[1] ?? "", tokens[2] ?? "", tokens[3] ?? "", value, extraOf(body), delivery.streamSeq], ts);
}

export const TELEMETRY_TABLE: TableSpec = {
  stream: "telemetry",
  jsStream: "TELEMETRY",
  columns: COLUMNS,
  timeColumn: "time",
  uniqueKey: ["stream_seq", "time"],
  indexes: [["site", "device", "metric", "time"]],
  segmentBy: ["site", "device", "metric"],
  parse,
  mergeSql: (table, stage) => insertIgnoringSql(COLUMNS, table, stage),
  appendOnly: true,
};
