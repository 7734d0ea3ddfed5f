import type { JsMsg } from "@nats-io/jetstream";
import { insertIgnoringSql, isoTime, validTimeMs, type ParsedMessage, type TableSpec } from "./table-spec.js";

const COLUMNS = [
  { name: "time", type: "timestamptz NOT NULL" },
  { name: "site", type: "text NOT NULL" },
  { name: "device", type: "text NOT NULL" },
  { name: "type", type: "text NOT NULL" },
  { name: "id", type: "text NOT NULL" },
  { name: "payload", type: "jsonb" },
  { name: "stream_seq", type: "bigint NOT NULL" },
] as const;

/**
 * `events.<site>.<device>.<type>`, any JSON payload. The id is the publisher's Nats-Msg-Id (else `seq:<stream
 * sequence>`); the time is the payload's `ts` (epoch ms) when it has one, else the time the stream stored it.
 */
function parse(m: JsMsg): ParsedMessage {
  const tokens = m.subject.split(".");
  if (tokens.length !== 4) return { reject: `sink: subject ${m.subject} is not events.<site>.<device>.<type>` };
  let payload: unknown;
  try {
    payload = JSON.parse(Buffer.from(m.data).toString("utf8"));
  } catch {
    return { reject: "sink: event payload is not JSON" };
  }
  const ts = (payload as { ts?: unknown } | null)?.ts;
  const timeMs = validTimeMs(ts) ? ts : Math.floor(m.info.timestampNanos / 1_000_000);
  const id = m.headers?.get("Nats-Msg-Id") || `seq:${m.seq}`;
  return { row: [isoTime(timeMs), tokens[1] ?? "", tokens[2] ?? "", tokens[3] ?? "", id, JSON.stringify(payload), m.seq], timeMs };
}

export const EVENTS_TABLE: TableSpec = {
  stream: "events",
  jsStream: "EVENTS",
  columns: COLUMNS,
  timeColumn: "time",
  uniqueKey: ["id", "time"],
  indexes: [["site", "device", "time"]],
  segmentBy: ["site", "device"],
  parse,
  mergeSql: (table, stage) => insertIgnoringSql(COLUMNS, table, stage),
  appendOnly: true,
};
