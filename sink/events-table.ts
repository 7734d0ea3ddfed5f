import type { JsMsg } from "@nats-io/jetstream";
import { messagePayload, type AckSubject } from "../fabric/core/index.js";
import { insertIgnoringSql, isoTime, json, row, validTimeMs, type ParsedMessage, type TableSpec } from "./table-spec.js";

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
function parse(m: JsMsg, delivery: Readonly<AckSubject>): ParsedMessage {
  const tokens = m.subject.split(".");
  if (tokens.length !== 4) return { reject: `sink: subject ${m.subject} is not events.<site>.<device>.<type>` };
  const payload = json(messagePayload(m));
  if (payload === undefined) return { reject: "sink: event payload is not JSON" };
  const ts = typeof payload === "object" && payload !== null && "ts" in payload ? payload.ts : undefined;
  const timeMs = validTimeMs(ts) ? ts : delivery.storedAtMs;
  const id = m.headers?.get("Nats-Msg-Id") || `seq:${delivery.streamSeq}`;
  return row([isoTime(timeMs), tokens[1] ?? "", tokens[2] ?? "", tokens[3] ?? "", id, JSON.stringify(payload), delivery.streamSeq], timeMs);
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
