import { createHash } from "node:crypto";
import { jetstream, jetstreamManager, type ConsumerMessages, type JsMsg } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { errorMessage, type Logger } from "../fabric/core/index.js";
import { HUB_STREAMS } from "../streams/index.js";
import { subjectsIntersect, subjectWithin } from "./topics.js";

/** How long a delivered, unacknowledged message waits before JetStream offers it again. */
export const DURABLE_ACK_WAIT_NS = 30_000_000_000; // 30 s
/** At most this many messages in flight to one client per stream (bounded by its receive maximum). */
export const DURABLE_MAX_ACK_PENDING = 1_024;

/** The smallest pattern matching everything two intersecting patterns match (`a.*.c` ∨ `a.b.*` = `a.*.*`). */
function join(x: string, y: string): string {
  const a = x.split(".");
  const b = y.split(".");
  const out: string[] = [];
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const s = a[i];
    const t = b[i];
    if (s === ">" || t === ">" || s === undefined || t === undefined) {
      out.push(">");
      break;
    }
    out.push(s === t ? s : "*");
  }
  return out.join(".");
}

/**
 * JetStream refuses a consumer whose filter subjects overlap. Patterns within another are dropped; two that
 * intersect otherwise are replaced by their join (the session then skips, and acknowledges, what none of its
 * subscriptions matches).
 */
export function disjointFilters(subjects: readonly string[]): string[] {
  let set = [...new Set(subjects)];
  for (let changed = true; changed; ) {
    changed = false;
    set = set.filter((s, i) => !set.some((o, j) => j !== i && subjectWithin(s, o) && (!subjectWithin(o, s) || j < i)));
    outer: for (let i = 0; i < set.length; i++) {
      for (let j = i + 1; j < set.length; j++) {
        const a = set[i] ?? "";
        const b = set[j] ?? "";
        if (subjectsIntersect(a, b)) {
          set = [...set.filter((_, k) => k !== i && k !== j), join(a, b)];
          changed = true;
          break outer;
        }
      }
    }
  }
  return set;
}

/** The hub stream that holds every subject of a subscription, if one does. */
export function streamFor(subjects: readonly string[]): string | undefined {
  return HUB_STREAMS.find((st) => subjects.every((s) => st.subjects.some((pattern) => subjectWithin(s, pattern))))?.name;
}

function clientHash(clientId: string): string {
  return createHash("sha256").update(clientId, "utf8").digest("hex").slice(0, 24);
}

export function durableName(clientId: string, stream: string): string {
  return `mqtt_${clientHash(clientId)}_${stream}`;
}

/** Where a session's push consumers deliver: only while its client is connected does anyone listen. */
export function deliverSubject(clientId: string, stream: string): string {
  return `$FABRIC.mqtt.deliver.${clientHash(clientId)}.${stream}`;
}

export interface DurableDelivery {
  /** Starts (or resumes) delivering; `deliver` returns false when the client has no room (the message is nak'ed). */
  start(deliver: (msg: JsMsg) => void): Promise<void>;
  stop(): Promise<void>;
}

/**
 * A persistent session's QoS 1/2 subscriptions whose subjects a hub stream stores are served from a durable
 * JetStream push consumer per stream: what arrives while the client is away waits for it, and what it did not
 * acknowledge is delivered again (DUP) when it is back. A push consumer delivers only while its deliver
 * subject has interest, that is while the client is connected (a pull request would outlive the connection
 * and take messages out of order). The consumer outlives the connection by the session expiry (inactive
 * threshold) and is deleted with the session.
 */
export class DurableSessionConsumers {
  private readonly running = new Map<string, ConsumerMessages>();

  constructor(
    private readonly nc: NatsConnection,
    private readonly clientId: string,
    private readonly log: Logger,
  ) {}

  /** Creates or updates the consumer of each stream to the subjects the session's subscriptions need. */
  async sync(byStream: ReadonlyMap<string, string[]>, expirySec: number, maxAckPending: number): Promise<void> {
    const jsm = await jetstreamManager(this.nc);
    for (const [stream, subjects] of byStream) {
      const name = durableName(this.clientId, stream);
      const config = {
        durable_name: name,
        deliver_subject: deliverSubject(this.clientId, stream),
        filter_subjects: disjointFilters(subjects),
        ack_policy: "explicit" as const,
        ack_wait: DURABLE_ACK_WAIT_NS,
        max_ack_pending: Math.min(maxAckPending, DURABLE_MAX_ACK_PENDING),
        inactive_threshold: Math.max(60, expirySec) * 1_000_000_000,
        deliver_policy: "new" as const,
      };
      const existing = await jsm.consumers.info(stream, name).catch(() => undefined);
      if (existing === undefined) {
        await jsm.consumers.add(stream, config);
      } else if (JSON.stringify([...(existing.config.filter_subjects ?? [])].sort()) !== JSON.stringify([...config.filter_subjects].sort())) {
        await jsm.consumers.update(stream, name, { filter_subjects: config.filter_subjects, max_ack_pending: config.max_ack_pending });
      }
    }
    for (const st of HUB_STREAMS) {
      if (byStream.has(st.name)) continue;
      await jsm.consumers.delete(st.name, durableName(this.clientId, st.name)).catch(() => undefined);
    }
  }

  /** Listens on the deliver subject of every stream the session has a consumer on. */
  async start(streams: Iterable<string>, deliver: (msg: JsMsg) => void): Promise<void> {
    const js = jetstream(this.nc);
    for (const stream of streams) {
      if (this.running.has(stream)) continue;
      const consumer = await js.consumers.getPushConsumer(stream, durableName(this.clientId, stream));
      const messages = await consumer.consume({ callback: deliver });
      this.running.set(stream, messages);
    }
  }

  /** Stops listening (what is delivered and unacknowledged is nak'ed by the caller, or redelivered after ack wait). */
  async stop(): Promise<void> {
    for (const [stream, m] of this.running) {
      try {
        await m.close();
      } catch (err) {
        this.log.debug({ stream, err: errorMessage(err) }, "consumer close");
      }
    }
    this.running.clear();
  }

  /** Deletes every consumer of the session (clean start, session ended). */
  static async deleteAll(nc: NatsConnection, clientId: string): Promise<void> {
    const jsm = await jetstreamManager(nc);
    await Promise.all(HUB_STREAMS.map((st) => jsm.consumers.delete(st.name, durableName(clientId, st.name)).catch(() => undefined)));
  }
}
