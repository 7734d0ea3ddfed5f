import { z } from "zod";
import { MAX_TOKEN_LENGTH } from "../../fabric/core/index.js";
import { topicFilterProblem, topicMatches } from "../topics.js";
import { LineProtocolError, parseLines, type InfluxMetric } from "./influx.js";
import { parseTelegrafJson } from "./telegraf-json.js";

/**
 * Payload formats of devices and agents that publish in layouts of their own, each message expanded into
 * TELEMETRY readings (`telemetry.<site>.<device>.<metric>`, `{"value", "ts", "tags"?}`):
 * - `influx`: Telegraf's MQTT output in InfluxDB line protocol (a batch is several lines), one reading per
 *   numeric or boolean field;
 * - `telegraf-json`: Telegraf's JSON format, one metric or a `{"metrics": […]}` batch;
 * - `homie`: Homie v4 property values (`homie/<device>/<node>/<property>`; Telegraf's `homie-v4` layout too).
 * site, device and metric are templates: `{user.site}` `{user.name}` (the publishing credential), `{topic.N}` (a
 * topic level, from 0), `{tag.NAME}` `{measurement}` `{field}` (influx and JSON), `{device}` `{node}` `{property}`
 * (Homie). What they give is made a fabric token: lowercased, other characters than a-z 0-9 _ - as `_`.
 */
const FORMATS = ["influx", "telegraf-json", "homie"] as const;
const TIME_UNITS = { ns: 1e-6, us: 1e-3, ms: 1, s: 1_000 } as const;

const filter = z.string().superRefine((t, ctx) => {
  const p = topicFilterProblem(t);
  if (p !== undefined) ctx.addIssue({ code: "custom", message: `topic filter ${JSON.stringify(t)}: ${p}` });
});

export const formatMappingSchema = z.strictObject({
  topic: filter,
  format: z.enum(FORMATS),
  site: z.string().min(1).default("{user.site}"),
  device: z.string().min(1).optional(),
  metric: z.string().min(1).optional(),
  /** The unit of the payload's timestamps: default ns for influx (Telegraf's precision), s for telegraf-json. */
  timestampUnit: z.enum(["ns", "us", "ms", "s"]).optional(),
});

/** `{ preset: "homie" }`, `{ preset: "telegraf" }` (line protocol), `{ preset: "telegraf-json" }`: the usual topic and layout. */
export const formatPresetSchema = z.strictObject({
  preset: z.enum(["homie", "telegraf", "telegraf-json"]),
  site: z.string().min(1).optional(),
  topic: filter.optional(),
});

export const formatEntrySchema = z.union([formatPresetSchema, formatMappingSchema]).transform((e): z.output<typeof formatMappingSchema> => {
  if (!("preset" in e)) return e;
  const format = e.preset === "telegraf" ? "influx" : e.preset;
  const topic = e.topic ?? (e.preset === "homie" ? "homie/#" : "telegraf/#");
  return { topic, format, site: e.site ?? "{user.site}" };
});
export type FormatEntry = z.input<typeof formatEntrySchema>;
type FormatMapping = z.output<typeof formatMappingSchema>;

export interface Reading {
  subject: string;
  payload: Uint8Array;
}

/** Readings, or a refusal (with the reading's subject when it is known: the REJECTED copy goes under it). */
export type Expanded = { readings: Reading[] } | { rejected: string; subject?: string };

/** Lowercase, other characters as `_`, at most 64: a fabric token (empty stays empty: refused by the caller). */
function asToken(s: string): string {
  return s
    .toLowerCase()
    .replace(/[^a-z0-9_-]/g, "_")
    .slice(0, MAX_TOKEN_LENGTH);
}

function fill(template: string, vars: (name: string) => string | undefined, what: string): string {
  const out = template.replace(/\{([a-z.A-Z0-9_-]+)\}/g, (_m, name: string) => {
    const v = vars(name);
    if (v === undefined) throw new LineProtocolError(`the ${what} takes {${name}}, which this message does not have`);
    return v;
  });
  const token = asToken(out);
  if (token === "" || /^_+$/.test(token)) throw new LineProtocolError(`the ${what} comes out empty from ${JSON.stringify(template)}`);
  return token;
}

export interface FormatUser {
  name: string;
  site?: string | undefined;
}

function readingsOf(m: FormatMapping, metrics: InfluxMetric[], levels: string[], user: FormatUser | undefined, receivedAt: number): Reading[] {
  const unit = TIME_UNITS[m.timestampUnit ?? (m.format === "influx" ? "ns" : "s")];
  const out: Reading[] = [];
  for (const metric of metrics) {
    const base = (name: string): string | undefined => {
      if (name.startsWith("tag.")) return metric.tags[name.slice(4)];
      if (name.startsWith("topic.")) return levels[Number(name.slice(6))];
      if (name === "measurement") return metric.measurement;
      if (name === "user.site") return user?.site;
      if (name === "user.name") return user?.name;
      return undefined;
    };
    const site = fill(m.site, base, "site");
    const device = fill(m.device ?? "{tag.host}", base, "device");
    const ts = metric.timestamp === undefined ? receivedAt : Math.round(metric.timestamp * unit);
    for (const [field, v] of Object.entries(metric.fields)) {
      if (typeof v === "string") continue; // a string field is no reading
      const metricName = fill(m.metric ?? "{measurement}_{field}", (n) => (n === "field" ? field : base(n)), "metric");
      const body = { value: typeof v === "boolean" ? (v ? 1 : 0) : v, ts, ...(Object.keys(metric.tags).length > 0 ? { tags: metric.tags } : {}) };
      out.push({ subject: `telemetry.${site}.${device}.${metricName}`, payload: Buffer.from(JSON.stringify(body)) });
    }
  }
  return out;
}

/** A Homie property value as a number: numbers as they are, booleans 1 and 0; anything else is no reading. */
function homieValue(text: string): number | undefined {
  const t = text.trim();
  if (t === "true") return 1;
  if (t === "false") return 0;
  if (/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(t)) return Number(t);
  return undefined;
}

export interface FormatMapper {
  /** The readings a message of a format topic expands into, its refusal, or undefined (no format takes it). */
  expand(topic: string, payload: Uint8Array, receivedAt: number, user?: FormatUser): Expanded | undefined;
  /** A Homie v4 device attribute (`homie/<device>/$<name>`) of a homie format's topic, or undefined. */
  homieAttribute(topic: string, payload: Uint8Array): { device: string; attribute: string; value: string } | undefined;
}

export function createFormatMapper(entries: readonly FormatMapping[]): FormatMapper {
  return {
    homieAttribute: (topic, payload) => {
      const levels = topic.split("/");
      if (levels.length !== 3 || !/^\$[a-z]+$/.test(levels[2] ?? "") || !entries.some((e) => e.format === "homie" && topicMatches(e.topic, topic))) return undefined;
      return { device: levels[1] ?? "", attribute: levels[2] ?? "", value: Buffer.from(payload).toString("utf8") };
    },
    expand: (topic, payload, receivedAt, user) => {
      const m = entries.find((e) => topicMatches(e.topic, topic));
      if (m === undefined) return undefined;
      const levels = topic.split("/");
      const text = Buffer.from(payload).toString("utf8");
      try {
        if (m.format === "homie") {
          // homie/<device>/<node>/<property>: attributes ($…) and commands (…/set) are not readings
          if (levels.length !== 4 || levels.some((l) => l.startsWith("$"))) return undefined;
          const [, dev = "", node = "", property = ""] = levels;
          const vars = (n: string): string | undefined =>
            n === "device" ? dev : n === "node" ? node : n === "property" ? property : n === "user.site" ? user?.site : n === "user.name" ? user?.name : n.startsWith("topic.") ? levels[Number(n.slice(6))] : undefined;
          const subject = `telemetry.${fill(m.site, vars, "site")}.${fill(m.device ?? "{device}", vars, "device")}.${fill(m.metric ?? "{node}_{property}", vars, "metric")}`;
          const value = homieValue(text);
          if (value === undefined) return { subject, rejected: `Homie property ${node}/${property} of ${dev}: value ${JSON.stringify(text.slice(0, 40))} is not a number or boolean (not a reading)` };
          return { readings: [{ subject, payload: Buffer.from(JSON.stringify({ value, ts: receivedAt })) }] };
        }
        const metrics = m.format === "influx" ? parseLines(text) : parseTelegrafJson(text);
        const readings = readingsOf(m, metrics, levels, user, receivedAt);
        if (readings.length === 0) return { rejected: `${m.format} payload has no numeric or boolean field` };
        return { readings };
      } catch (err) {
        if (err instanceof LineProtocolError) return { rejected: `${m.format === "influx" ? "line protocol" : m.format}: ${err.message}` };
        throw err;
      }
    },
  };
}
