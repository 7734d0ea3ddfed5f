import type { JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { InvalidInputError, parseInput, type Logger } from "../fabric/core/index.js";
import { EDGE_STREAMS } from "../leafnode-config/index.js";
import { CHECKPOINTS_BUCKET, ensureKvBuckets, LATEST_BUCKET, LEASES_BUCKET, startWindowWorker, windowDefinitionSchema, type WindowDefinition, type WindowWorker } from "../streams/index.js";

/** Window state the site keeps for its own windows (the hub's buckets of the same names). */
const SITE_WINDOW_BUCKETS: readonly string[] = [CHECKPOINTS_BUCKET, LATEST_BUCKET, LEASES_BUCKET];
/** The most the site keeps of what its windows refuse. */
export const EDGE_REJECTED_BYTES = 16 * 1024 * 1024; // 16 MiB
/** What the site's windows refuse stays at the site (with the reason), in a bounded stream. */
const EDGE_REJECTED = { name: "EDGE_REJECTED", subjects: ["rejected.>"], max_bytes: EDGE_REJECTED_BYTES, max_age: 7 * 86_400 * 1e9, discard: "old" as const };

/**
 * A site's windows: each reads the site's EDGE_TELEMETRY and emits mergeable partials (its `source` is the
 * site's, `emit.partials` is on); tumbling only, so each reading counts once in what the hub merges. Errors name
 * the field (`preAggregate.0.window.kind`).
 */
export function parsePreAggregate(site: string, inputs: readonly unknown[]): WindowDefinition[] {
  return inputs.map((input, i) => {
    const what = `preAggregate.${i}`;
    if (typeof input !== "object" || input === null || Array.isArray(input)) throw new InvalidInputError(`${what}: a window definition (an object) is expected`);
    const raw = input as Record<string, unknown>;
    if (raw["source"] !== undefined) throw new InvalidInputError(`${what}.source: a site's windows read the site's own telemetry; leave source out`);
    const emit = typeof raw["emit"] === "object" && raw["emit"] !== null ? (raw["emit"] as Record<string, unknown>) : {};
    const def = parseInput(windowDefinitionSchema, { ...raw, source: { stream: EDGE_STREAMS.telemetry.edge, filter: `telemetry.${site}.>` }, emit: { ...emit, partials: true } }, what);
    if (def.window.kind !== "tumbling") throw new InvalidInputError(`${what}.window.kind: a site pre-aggregates in tumbling windows only (each reading counts once in the hub's merge)`);
    return def;
  });
}

/** The stores the site's windows need: their KV buckets and a bounded stream for what they refuse. */
export async function ensureWindowStores(nc: NatsConnection, jsm: JetStreamManager): Promise<void> {
  if ((await jsm.streams.info(EDGE_REJECTED.name).catch(() => undefined)) === undefined) await jsm.streams.add(EDGE_REJECTED);
  await ensureKvBuckets(nc, jsm, SITE_WINDOW_BUCKETS, 1);
}

/** Runs the site's windows in the agent's process (one member: the site). */
export async function startPreAggregation(nc: NatsConnection, site: string, definitions: readonly WindowDefinition[], logger: Logger): Promise<WindowWorker[]> {
  const workers: WindowWorker[] = [];
  for (const definition of definitions) workers.push(await startWindowWorker({ connection: nc, logger, definition, memberId: `edge-${site}-${definition.name}` }));
  return workers;
}
