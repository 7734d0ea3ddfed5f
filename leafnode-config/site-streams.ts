import { z } from "zod";
import { edgeSourceConsumer, parseInput, subjects } from "../fabric/core/index.js";

/**
 * A site's store-and-forward streams, each sourced by the hub stream of the same kind: events and telemetry,
 * and, when the site pre-aggregates, the mergeable partial results of its windows.
 */
export const SITE_STREAM_KINDS = ["events", "telemetry", "aggregates"] as const;
export type SiteStreamKind = (typeof SITE_STREAM_KINDS)[number];
/** What a site ships unless told otherwise. */
export const DEFAULT_SITE_STREAMS: readonly SiteStreamKind[] = ["events", "telemetry"];

export const EDGE_STREAMS: Readonly<Record<SiteStreamKind, { edge: string; hub: string; subject: (site: string) => string }>> = {
  events: { edge: "EDGE_EVENTS", hub: "EVENTS", subject: (site) => `events.${site}.>` },
  telemetry: { edge: "EDGE_TELEMETRY", hub: "TELEMETRY", subject: (site) => `telemetry.${site}.>` },
  // window results keyed site.device.metric: agg.<window>.<site>.<device>.<metric>
  aggregates: { edge: "EDGE_AGGREGATES", hub: "AGGREGATES", subject: (site) => `agg.*.${site}.>` },
};

/** What a full buffer does: drop the oldest messages (they never reach the hub), or refuse new ones (publishers see an error). */
export const OVERFLOW_POLICIES = ["drop-oldest", "reject-new"] as const;
export type OverflowPolicy = (typeof OVERFLOW_POLICIES)[number];

/** Events are few and critical: refuse rather than drop. Telemetry is bulk: keep the freshest. Partials: the freshest. */
export const DEFAULT_OVERFLOW: Readonly<Record<SiteStreamKind, OverflowPolicy>> = { events: "reject-new", telemetry: "drop-oldest", aggregates: "drop-oldest" };
/** The share of the site's buffer its events get, and its partial aggregates (the rest is telemetry's). */
export const EVENTS_BUFFER_SHARE = 0.1;
/** Publishers' Nats-Msg-Id are deduplicated within this window at the site (and again at the hub). */
export const EDGE_DUPLICATE_WINDOW_MS = 120_000; // 2 min
/** The sourcing consumer's heartbeat: a stalled source is noticed after a few of these. */
export const SOURCE_HEARTBEAT_MS = 1_000; // 1 s
/** Deliveries in flight to the hub per source before it waits for flow control acks. */
export const SOURCE_MAX_ACK_PENDING = 10_000;

const ms2ns = (ms: number): number => ms * 1_000_000;

export const bufferSchema = z.strictObject({
  /** Bytes the site may buffer in all (events get EVENTS_BUFFER_SHARE of it). */
  bytes: z.number().int().min(1024 * 1024, "the buffer must be at least 1 MiB"),
  /** How long a message may wait for the hub before it is dropped. */
  maxAgeMs: z.number().int().positive("the buffer's max age must be positive"),
  overflow: z
    .strictObject({
      events: z.enum(OVERFLOW_POLICIES).default(DEFAULT_OVERFLOW.events),
      telemetry: z.enum(OVERFLOW_POLICIES).default(DEFAULT_OVERFLOW.telemetry),
      aggregates: z.enum(OVERFLOW_POLICIES).default(DEFAULT_OVERFLOW.aggregates),
    })
    .prefault({}),
});
export type BufferSpec = z.infer<typeof bufferSchema>;
export type BufferSpecInput = z.input<typeof bufferSchema>;

/**
 * The bytes of the site's buffer one stream gets: events a share, the partial aggregates a share when the site
 * pre-aggregates, telemetry the rest.
 */
export function bufferBytes(buffer: BufferSpec, kind: SiteStreamKind, preAggregates = false): number {
  const share = Math.max(1024 * 1024, Math.floor(buffer.bytes * EVENTS_BUFFER_SHARE));
  return kind === "telemetry" ? Math.max(1024 * 1024, buffer.bytes - (preAggregates ? 2 : 1) * share) : share;
}

/** The config of a site's edge stream, with explicit limits and overflow policy (JetStream's stream config). */
export function edgeStreamConfig(site: string, kind: SiteStreamKind, input: BufferSpecInput, preAggregates = false): Record<string, unknown> {
  const buffer = parseInput(bufferSchema, input, "buffer");
  const s = EDGE_STREAMS[kind];
  return {
    name: s.edge,
    subjects: [s.subject(site)],
    retention: "limits",
    storage: "file",
    num_replicas: 1,
    max_bytes: bufferBytes(buffer, kind, preAggregates),
    max_age: ms2ns(buffer.maxAgeMs),
    max_msgs: -1,
    max_msg_size: -1,
    discard: buffer.overflow[kind] === "drop-oldest" ? "old" : "new",
    duplicate_window: ms2ns(Math.min(EDGE_DUPLICATE_WINDOW_MS, buffer.maxAgeMs)),
  };
}

/**
 * The durable consumer the hub sources a site stream through (durable sourcing, nats-server 2.14+): it lives on
 * the site, so the site keeps its place while the hub is away; flow-control acks move its floor.
 */
export function edgeSourceConsumerConfig(site: string, kind: SiteStreamKind): Record<string, unknown> {
  return {
    durable_name: edgeSourceConsumer(site),
    description: `the hub's source of ${EDGE_STREAMS[kind].edge} at site ${site}`,
    deliver_subject: subjects.edge.deliver(site, kind),
    deliver_policy: "all",
    ack_policy: "flow_control",
    flow_control: true,
    idle_heartbeat: ms2ns(SOURCE_HEARTBEAT_MS),
    max_deliver: -1,
    max_ack_pending: SOURCE_MAX_ACK_PENDING,
    replay_policy: "instant",
  };
}

/** A subject transform of a hub stream's source (JetStream's `subject_transforms` entry). */
export interface SubjectTransform {
  src: string;
  dest: string;
}

/**
 * The transforms that pin what the hub stores from a site to that site's own subjects, whatever the site sends.
 * The hub stores a sourced message under the subject the site's server gives it: a compromised site (or one
 * whose stream was widened) could otherwise write under another site's subjects, or any subject at all. Every
 * subject from the site is rewritten into the site's namespace: the kind's first token and the site's token
 * take the place of the first tokens it came with (the rest is kept), and subjects too short for that are put
 * under it whole. A well-behaved site's subjects are unchanged.
 */
export function siteSubjectTransforms(site: string, kind: SiteStreamKind): SubjectTransform[] {
  const w = (n: number): string => `{{wildcard(${n})}}`;
  if (kind === "aggregates") {
    // agg.<window>.<site>.<device>.<metric>: the window is the site's to name
    return [
      { src: "*.*.*.>", dest: `agg.${w(2)}.${site}.>` },
      { src: "*.*.*", dest: `agg.${w(2)}.${site}.${w(3)}` },
      { src: "*.*", dest: `agg.${w(2)}.${site}` },
      { src: "*", dest: `agg.${w(1)}.${site}` },
    ];
  }
  const prefix = kind === "events" ? "events" : "telemetry";
  return [
    { src: "*.*.>", dest: `${prefix}.${site}.>` },
    { src: "*.*", dest: `${prefix}.${site}.${w(1)}.${w(2)}` },
    { src: "*", dest: `${prefix}.${site}.${w(1)}` },
  ];
}

/** The source entry a hub stream gets for a site: the site's durable consumer, through `$JS.<site>.API`. */
export interface SiteSource {
  name: string;
  external: { api: string; deliver: string };
  consumer: { name: string; deliver_subject: string };
  subject_transforms: SubjectTransform[];
}

export function hubSiteSource(site: string, kind: SiteStreamKind): SiteSource {
  return {
    name: EDGE_STREAMS[kind].edge,
    external: { api: `$JS.${site}.API`, deliver: "" },
    consumer: { name: edgeSourceConsumer(site), deliver_subject: subjects.edge.deliver(site, kind) },
    subject_transforms: siteSubjectTransforms(site, kind),
  };
}

interface SourceEntry {
  name?: unknown;
  external?: { api?: unknown } | null;
}

const isSiteSource = (site: string, e: SourceEntry): boolean => e.external?.api === `$JS.${site}.API`;

/** The hub stream's sources with the site's entry in place, where it was or last (others kept as they are). */
export function withSiteSource<T extends SourceEntry>(sources: readonly T[] | undefined, site: string, kind: SiteStreamKind): (T | SiteSource)[] {
  const list = sources ?? [];
  const at = list.findIndex((e) => isSiteSource(site, e));
  const entry = hubSiteSource(site, kind);
  if (at < 0) return [...list, entry];
  return [...list.slice(0, at), entry, ...list.slice(at + 1).filter((e) => !isSiteSource(site, e))];
}

/** The hub stream's sources without the site's entry. */
export function withoutSiteSource<T extends SourceEntry>(sources: readonly T[] | undefined, site: string): T[] {
  return (sources ?? []).filter((e) => !isSiteSource(site, e));
}

/** The sites a hub stream sources (from its `$JS.<site>.API` entries). */
export function sourcedSites(sources: readonly SourceEntry[] | undefined): string[] {
  const out: string[] = [];
  for (const e of sources ?? []) {
    const m = typeof e.external?.api === "string" ? /^\$JS\.([^.]+)\.API$/.exec(e.external.api) : null;
    if (m?.[1] !== undefined) out.push(m[1]);
  }
  return out;
}
