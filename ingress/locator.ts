import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";

export const STREAM_LOOKUP_TTL_MS = 30_000; // 30 s
const MAX_ENTRIES = 16_384;

interface Entry {
  until: number;
  pending: Promise<string | undefined>;
  resolved?: { stream: string | undefined };
}

/**
 * Which stream stores a subject (`$JS.API.STREAM.NAMES` with a subject), remembered for 30 s. A QoS 1/2
 * publish goes to JetStream only when a stream stores its subject: otherwise the reply a subscriber might
 * send would be taken for the store's acknowledgement, or none would come.
 */
export class StreamLocator {
  private readonly cache = new Map<string, Entry>();
  private jsm: Promise<JetStreamManager> | undefined;

  constructor(private readonly nc: NatsConnection) {}

  /** The stream of a subject: at once when known, else a promise. */
  streamOf(subject: string): { stream: string | undefined } | Promise<string | undefined> {
    const hit = this.cache.get(subject);
    if (hit !== undefined && hit.until > Date.now()) return hit.resolved ?? hit.pending;
    const pending = this.lookup(subject);
    if (this.cache.size >= MAX_ENTRIES) this.cache.clear();
    const entry: Entry = { until: Date.now() + STREAM_LOOKUP_TTL_MS, pending };
    this.cache.set(subject, entry);
    pending.then(
      (stream) => (entry.resolved = { stream }),
      () => this.cache.delete(subject),
    );
    return pending;
  }

  private async lookup(subject: string): Promise<string | undefined> {
    this.jsm ??= jetstreamManager(this.nc);
    const jsm = await this.jsm;
    for await (const name of jsm.streams.names(subject)) return name;
    return undefined;
  }
}
