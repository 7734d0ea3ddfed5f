import type { InfluxMetric } from "./influx.js";
import { LineProtocolError } from "./influx.js";

/**
 * Telegraf's JSON serializer (`data_format = "json"`): one metric
 * `{"fields": {…}, "name": "cpu", "tags": {…}, "timestamp": 1458229140}`, or with `json_batch`… a batch
 * `{"metrics": [ … ]}`. The timestamp's unit is the writer's (`json_timestamp_units`, seconds by default).
 */
export function parseTelegrafJson(payload: string): InfluxMetric[] {
  let body: unknown;
  try {
    body = JSON.parse(payload);
  } catch {
    throw new LineProtocolError("payload is not JSON");
  }
  const list = body !== null && typeof body === "object" && "metrics" in body ? body.metrics : [body];
  if (!Array.isArray(list) || list.length === 0) throw new LineProtocolError("metrics is not a non-empty array");
  return list.map((m, i) => {
    if (m === null || typeof m !== "object") throw new LineProtocolError(`metric ${i + 1} is not an object`);
    const { name, fields, tags, timestamp } = m as Record<string, unknown>;
    if (typeof name !== "string" || name === "") throw new LineProtocolError(`metric ${i + 1} has no name`);
    if (fields === null || typeof fields !== "object" || Array.isArray(fields)) throw new LineProtocolError(`metric ${i + 1} (${name}) has no fields object`);
    const t: Record<string, string> = {};
    if (tags !== undefined) {
      if (tags === null || typeof tags !== "object" || Array.isArray(tags)) throw new LineProtocolError(`metric ${i + 1} (${name}): tags is not an object`);
      for (const [k, v] of Object.entries(tags as Record<string, unknown>)) t[k] = String(v);
    }
    const f: InfluxMetric["fields"] = {};
    for (const [k, v] of Object.entries(fields as Record<string, unknown>)) {
      if (typeof v === "number" || typeof v === "boolean" || typeof v === "string") f[k] = v;
    }
    if (timestamp !== undefined && (typeof timestamp !== "number" || !Number.isFinite(timestamp))) throw new LineProtocolError(`metric ${i + 1} (${name}): timestamp is not a number`);
    return { measurement: name, tags: t, fields: f, ...(timestamp === undefined ? {} : { timestamp }) };
  });
}
