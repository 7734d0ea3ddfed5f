import { z } from "zod";
import { isToken } from "../fabric/core/index.js";
import { topicToSubject } from "./topics.js";
import { createFormatMapper, type formatEntrySchema, type FormatUser, type Reading } from "./formats/format-mapping.js";

/**
 * Legacy topic mappings and payload normalisers. A mapping turns a legacy topic shape into a fabric subject,
 * e.g. `{org}/{site}/{type}/{device}/reading` → `telemetry.{site}.{device}.{type}`, and may normalise the
 * payload (a legacy JSON shape with seconds → `{"value", "ts"}` in ms). Topics no mapping matches use the
 * default mapping (`a/b/c` ↔ `a.b.c`).
 */
const VAR = /^\{([a-z][a-z0-9_]*)\}$/;
const SUBJECT_CACHE_SIZE = 16_384;

export const payloadNormaliserSchema = z.strictObject({
  /** Dotted path of the reading's value in the legacy JSON, e.g. `data.v`. */
  value: z.string().min(1),
  /** Dotted path of the event time, e.g. `t`; absent: the time the ingress received it. */
  ts: z.string().min(1).optional(),
  /** Unit of the legacy time: seconds or milliseconds since the epoch. */
  tsUnit: z.enum(["s", "ms"]).default("ms"),
  /** Dotted path of the device's name in the legacy JSON: the subject's `{device}` comes from the payload. */
  device: z.string().min(1).optional(),
});

export const topicMappingSchema = z
  .strictObject({
    topic: z.string().min(1),
    subject: z.string().min(1),
    payload: payloadNormaliserSchema.optional(),
  })
  .superRefine((m, ctx) => {
    const vars = new Set<string>(m.payload?.device === undefined ? [] : ["device"]);
    for (const level of m.topic.split("/")) {
      const v = VAR.exec(level);
      if (v !== null) vars.add(v[1] ?? "");
      else if (level.includes("{") || level.includes("}") || level.includes("+") || level.includes("#")) {
        ctx.addIssue({ code: "custom", path: ["topic"], message: `level ${JSON.stringify(level)} must be a literal or a whole {variable}` });
      }
    }
    for (const token of m.subject.split(".")) {
      const names = [...token.matchAll(/\{([^}]*)\}/g)].map((x) => x[1] ?? "");
      for (const n of names) if (!vars.has(n)) ctx.addIssue({ code: "custom", path: ["subject"], message: `{${n}} is not a variable of the topic` });
      if (names.length === 0 && !isToken(token) && token !== "$FABRIC") ctx.addIssue({ code: "custom", path: ["subject"], message: `token ${JSON.stringify(token)} is not a fabric token` });
    }
  });
export type TopicMapping = z.input<typeof topicMappingSchema>;

export interface MappedMessage {
  subject: string;
  payload: Uint8Array;
  /** Why the message is refused (it goes to REJECTED with this reason). */
  rejected?: string;
  /** A format message (Telegraf, Homie) expanded into readings: each is published or stored on its own. */
  readings?: Reading[];
  /** A Homie v4 device attribute (`homie/<device>/$state`, …): the registry takes it in. */
  homieAttribute?: { device: string; attribute: string; value: string };
}

function at(obj: unknown, path: string): unknown {
  let cur: unknown = obj;
  for (const key of path.split(".")) {
    if (cur === null || typeof cur !== "object") return undefined;
    cur = (cur as Record<string, unknown>)[key];
  }
  return cur;
}

/** Checks a telemetry payload against the contract `{"value": number, "ts": epoch ms, ...}`. */
export function telemetryProblem(payload: Uint8Array): string | undefined {
  let body: unknown;
  try {
    body = JSON.parse(Buffer.from(payload).toString("utf8"));
  } catch {
    return "telemetry payload is not JSON";
  }
  if (body === null || typeof body !== "object" || Array.isArray(body)) return "telemetry payload is not a JSON object";
  const { value, ts } = body as { value?: unknown; ts?: unknown };
  if (typeof value !== "number" || !Number.isFinite(value)) return "telemetry payload has no numeric value";
  if (typeof ts !== "number" || !Number.isFinite(ts) || ts <= 0) return "telemetry payload has no numeric ts (epoch ms)";
  return undefined;
}

export interface TopicMapper {
  /** `user`: the publishing credential (format templates may name its site). */
  inbound(topic: string, payload: Uint8Array, receivedAt: number, user?: FormatUser): MappedMessage;
}

/**
 * Compiles the mappings (already validated) into a mapper: a format entry whose topic filter matches goes first
 * (its message expands into readings), then the first matching topic mapping, then the default.
 */
export function createTopicMapper(mappings: readonly z.output<typeof topicMappingSchema>[], formats: readonly z.output<typeof formatEntrySchema>[] = []): TopicMapper {
  const formatMapper = createFormatMapper(formats);
  // devices publish to the same few topics over and over
  const defaultSubjects = new Map<string, string>();
  const compiled = mappings.map((m) => ({ ...m, levels: m.topic.split("/").map((l) => VAR.exec(l)?.[1] ?? { literal: l }) }));
  const finish = (subject: string, payload: Uint8Array): MappedMessage => {
    if (subject.startsWith("telemetry.")) {
      const problem = telemetryProblem(payload);
      if (problem !== undefined) return { subject, payload, rejected: problem };
    }
    return { subject, payload };
  };
  return {
    inbound: (topic, payload, receivedAt, user) => {
      const expanded = formats.length === 0 ? undefined : formatMapper.expand(topic, payload, receivedAt, user);
      const attribute = formats.length === 0 ? undefined : formatMapper.homieAttribute(topic, payload);
      if (expanded !== undefined) {
        if ("rejected" in expanded) return { subject: expanded.subject ?? topicToSubject(topic), payload, rejected: expanded.rejected };
        return { subject: expanded.readings[0]?.subject ?? topicToSubject(topic), payload, readings: expanded.readings };
      }
      const levels = topic.split("/");
      for (const m of compiled) {
        if (m.levels.length !== levels.length) continue;
        const vars: Record<string, string> = {};
        const ok = m.levels.every((l, i) => {
          const v = levels[i] ?? "";
          if (typeof l === "string") {
            vars[l] = v;
            return isToken(v);
          }
          return l.literal === v;
        });
        if (!ok) continue;
        const fill = (): string => m.subject.replace(/\{([^}]*)\}/g, (_, n: string) => vars[n] ?? "");
        if (m.payload === undefined) return finish(fill(), payload);
        let body: unknown;
        try {
          body = JSON.parse(Buffer.from(payload).toString("utf8"));
        } catch {
          return { subject: m.payload.device === undefined ? fill() : topicToSubject(topic), payload, rejected: "legacy payload is not JSON" };
        }
        if (m.payload.device !== undefined) {
          const device = at(body, m.payload.device);
          if (typeof device !== "string" || !isToken(device)) return { subject: topicToSubject(topic), payload, rejected: `legacy payload has no device name (a fabric token) at ${m.payload.device}` };
          vars["device"] = device;
        }
        const subject = fill();
        const value = at(body, m.payload.value);
        if (typeof value !== "number" || !Number.isFinite(value)) return { subject, payload, rejected: `legacy payload has no number at ${m.payload.value}` };
        let ts = receivedAt;
        if (m.payload.ts !== undefined) {
          const t = at(body, m.payload.ts);
          if (typeof t !== "number" || !Number.isFinite(t)) return { subject, payload, rejected: `legacy payload has no number at ${m.payload.ts}` };
          ts = m.payload.tsUnit === "s" ? Math.round(t * 1000) : t;
        }
        return finish(subject, Buffer.from(JSON.stringify({ value, ts })));
      }
      let subject = defaultSubjects.get(topic);
      if (subject === undefined) {
        subject = topicToSubject(topic);
        if (defaultSubjects.size >= SUBJECT_CACHE_SIZE) defaultSubjects.clear();
        defaultSubjects.set(topic, subject);
      }
      const message = finish(subject, payload);
      return attribute === undefined ? message : { ...message, homieAttribute: attribute };
    },
  };
}
