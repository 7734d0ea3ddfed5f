/**
 * InfluxDB line protocol, as Telegraf's MQTT output writes it (`data_format = "influx"`):
 * `<measurement>[,<tag>=<value>…] <field>=<value>[,<field>=<value>…] [<timestamp>]`, one metric per line
 * (a batch is several lines). Escapes: `\,` `\ ` in the measurement, `\,` `\=` `\ ` in tag keys, tag values and
 * field keys, `\"` `\\` inside string field values. Field values: floats (`1.5`, `-2e3`), integers (`12i`),
 * unsigned (`12u`), strings (`"…"`), booleans (`t`, `true`, `F`, `false`, …).
 */

export type InfluxFieldValue = number | boolean | string;

export interface InfluxMetric {
  measurement: string;
  tags: Record<string, string>;
  fields: Record<string, InfluxFieldValue>;
  /** As written (its unit is the writer's precision, nanoseconds by default); undefined when absent. */
  timestamp?: number;
}

export class LineProtocolError extends Error {}

/** Splits `s` at unescaped `sep` outside double quotes (the quotes matter in field sets only). */
function splitUnescaped(s: string, sep: string, quotes: boolean): string[] {
  const out: string[] = [];
  let cur = "";
  let inQuotes = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i] ?? "";
    if (c === "\\" && i + 1 < s.length) {
      cur += c + (s[i + 1] ?? "");
      i++;
      continue;
    }
    if (quotes && c === '"') inQuotes = !inQuotes;
    if (c === sep && !inQuotes) {
      out.push(cur);
      cur = "";
      continue;
    }
    cur += c;
  }
  if (inQuotes) throw new LineProtocolError("a string field value is not closed");
  out.push(cur);
  return out;
}

const unescape = (s: string): string => s.replace(/\\([,= "\\])/g, "$1");

/** Index of the first unescaped `=` in a key=value pair. */
function splitPair(pair: string, what: string): [string, string] {
  for (let i = 0; i < pair.length; i++) {
    if (pair[i] === "\\") {
      i++;
      continue;
    }
    if (pair[i] === "=") {
      const key = unescape(pair.slice(0, i));
      if (key === "") throw new LineProtocolError(`${what} ${JSON.stringify(pair)} has an empty key`);
      return [key, pair.slice(i + 1)];
    }
  }
  throw new LineProtocolError(`${what} ${JSON.stringify(pair)} is not key=value`);
}

function fieldValue(raw: string, key: string): InfluxFieldValue {
  if (raw.startsWith('"')) {
    if (raw.length < 2 || !raw.endsWith('"')) throw new LineProtocolError(`field ${key}: string value is not quoted right`);
    return raw.slice(1, -1).replace(/\\(["\\])/g, "$1");
  }
  if (/^(t|T|true|True|TRUE)$/.test(raw)) return true;
  if (/^(f|F|false|False|FALSE)$/.test(raw)) return false;
  if (/^-?\d+i$/.test(raw) || /^\d+u$/.test(raw)) return Number(raw.slice(0, -1));
  if (/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(raw)) return Number(raw);
  throw new LineProtocolError(`field ${key}: value ${JSON.stringify(raw)} is not a number, string or boolean`);
}

/** Parses one line; comments and blank lines give undefined. Throws LineProtocolError naming what is wrong. */
export function parseLine(line: string): InfluxMetric | undefined {
  const text = line.trim();
  if (text === "" || text.startsWith("#")) return undefined;
  const parts = splitUnescaped(text, " ", true).filter((p) => p !== "");
  if (parts.length < 2 || parts.length > 3) throw new LineProtocolError(`line ${JSON.stringify(text.slice(0, 80))} needs a measurement, fields and an optional timestamp`);
  const [head = "", fieldSet = "", ts] = parts;
  const [measurementRaw = "", ...tagPairs] = splitUnescaped(head, ",", false);
  const measurement = unescape(measurementRaw);
  if (measurement === "") throw new LineProtocolError("the measurement is empty");
  const tags: Record<string, string> = {};
  for (const p of tagPairs) {
    const [k, v] = splitPair(p, "tag");
    tags[k] = unescape(v);
  }
  const fields: Record<string, InfluxFieldValue> = {};
  for (const p of splitUnescaped(fieldSet, ",", true)) {
    const [k, v] = splitPair(p, "field");
    fields[k] = fieldValue(v, k);
  }
  if (ts === undefined) return { measurement, tags, fields };
  if (!/^-?\d+$/.test(ts)) throw new LineProtocolError(`timestamp ${JSON.stringify(ts)} is not an integer`);
  return { measurement, tags, fields, timestamp: Number(ts) };
}

/** Every metric of a payload (a batch is one metric per line). */
export function parseLines(payload: string): InfluxMetric[] {
  const out: InfluxMetric[] = [];
  for (const [i, line] of payload.split("\n").entries()) {
    try {
      const m = parseLine(line);
      if (m !== undefined) out.push(m);
    } catch (err) {
      throw new LineProtocolError(`line ${i + 1}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  if (out.length === 0) throw new LineProtocolError("no metric in the payload");
  return out;
}
