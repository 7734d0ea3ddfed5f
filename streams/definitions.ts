import type { JetStreamManager, StreamConfig } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";

const DAY_NS = 86_400 * 1_000_000_000;
const MINUTE_NS = 60 * 1_000_000_000;

/** A stream the fabric owns, with the parts of its config the fabric decides. */
export interface StreamDefinition {
  name: string;
  subjects: string[];
  description: string;
  /** nanoseconds */
  max_age: number;
  /** nanoseconds; the window in which a repeated `Nats-Msg-Id` is stored once */
  duplicate_window: number;
}

/** The hub's streams (DESIGN.md "Contracts"). */
export const HUB_STREAMS: readonly StreamDefinition[] = [
  { name: "TELEMETRY", subjects: ["telemetry.>"], description: "device readings", max_age: 7 * DAY_NS, duplicate_window: 2 * MINUTE_NS },
  { name: "EVENTS", subjects: ["events.>"], description: "critical events, exactly once by Nats-Msg-Id", max_age: 30 * DAY_NS, duplicate_window: 10 * MINUTE_NS },
  { name: "AGGREGATES", subjects: ["agg.>"], description: "window results", max_age: 30 * DAY_NS, duplicate_window: 10 * MINUTE_NS },
  { name: "COMMANDS", subjects: ["cmd.>"], description: "commands to devices", max_age: 1 * DAY_NS, duplicate_window: 10 * MINUTE_NS },
  { name: "REJECTED", subjects: ["rejected.>"], description: "input that failed validation, reason in the Fabric-Reject-Reason header", max_age: 7 * DAY_NS, duplicate_window: 2 * MINUTE_NS },
  { name: "DEAD_LETTER", subjects: ["deadletter.>"], description: "messages a consumer failed to process max_deliveries times (deadletter.<stream>.<consumer>)", max_age: 30 * DAY_NS, duplicate_window: 10 * MINUTE_NS },
];

/** Poison messages of gateway consumers with max_deliveries, on `deadletter.<stream>.<consumer>`. */
export const DEAD_LETTER_STREAM = "DEAD_LETTER";
export function deadLetterSubject(stream: string, consumer: string): string {
  return `deadletter.${stream}.${consumer}`;
}

/** Where the MQTT ingress keeps retained messages: the last message per subject, for every instance. */
export const MQTT_RETAINED_STREAM = "MQTT_RETAINED";
export const MQTT_RETAINED_PREFIX = "$FABRIC.mqtt.retained";
/** The MQTT ingress's sessions (subscriptions, session epoch, expiry), by hashed client id. */
export const MQTT_SESSIONS_BUCKET = "mqtt_sessions";

/** Wills of connected MQTT clients, so another instance publishes them when the serving one dies. */
export const MQTT_WILLS_BUCKET = "mqtt_wills";
/** Liveness of MQTT ingress instances: a key per instance, refreshed every few seconds, expiring by age. */
export const MQTT_INSTANCES_BUCKET = "mqtt_instances";
export const MQTT_INSTANCE_TTL_MS = 6_000; // 6 s

/** Window results: the latest per key ("current value" queries). */
export const LATEST_BUCKET = "agg_latest";
/** Window definitions, seen by every worker. */
export const DEFINITIONS_BUCKET = "window_defs";
/** Window operator state and input positions. */
export const CHECKPOINTS_BUCKET = "window_checkpoints";

/**
 * Window workers' membership and partition leases: `m.<member>` is a live worker process (the definitions it
 * runs), `p.<window>.<partition>` the member that owns a partition. Entries are refreshed every second and
 * expire by age (the server's clock, so no two hosts' clocks are compared): a dead worker's partitions are free
 * again within this time.
 */
export const LEASES_BUCKET = "window_leases";
export const LEASE_TTL_MS = 4_000; // 4 s

/** The hub's KV buckets. */
/** The latest report of each edge site (`$FABRIC.edge.<site>.status`), by site. */
export const EDGE_SITES_BUCKET = "edge_sites";

/** The identity service's used nonces (a nonce lives 1 min: entries outlast it), so each is accepted once. */
export const USED_NONCES_BUCKET = "id_nonces";
const USED_NONCES_TTL_MS = 120_000; // 2 min
/**
 * SendCommand's idempotency keys (`<site>.<device>.<hash of the key>` → the command sent under it), kept as
 * long as COMMANDS's duplicate window: a repeated key reaches no device.
 */
export const COMMAND_KEYS_BUCKET = "cmd_keys";
export const COMMAND_KEYS_TTL_MS = 10 * 60_000; // 10 min, COMMANDS's duplicate window

/** Sink definitions (`fabric sinks add`), followed by every hub process that runs sinks. */
export const SINK_DEFINITIONS_BUCKET = "sink_defs";
/**
 * What each process running a sink reports (`<sink>.<runner>`: per stream the database state, last batch, last
 * error), refreshed every few seconds and expiring by age: a stopped runner's report is gone within this time.
 */
export const SINK_STATUS_BUCKET = "sink_status";
export const SINK_STATUS_TTL_MS = 15_000; // 15 s

/** The device registry: one entry per device (`<site>.<name>`), its keys, metadata and live state (issue 15). */
export const DEVICES_BUCKET = "devices";

/** Device twins: desired and reported state per device, versioned (issue 15). */
export const TWINS_BUCKET = "device_twins";

export const HUB_KV_BUCKETS: readonly { name: string; description: string; history: number; ttlMs?: number }[] = [
  { name: LATEST_BUCKET, description: "latest window result per key", history: 1 },
  { name: DEFINITIONS_BUCKET, description: "window definitions shared by every worker", history: 5 },
  { name: CHECKPOINTS_BUCKET, description: "window operator state and input positions", history: 1 },
  { name: LEASES_BUCKET, description: "window worker membership and partition leases", history: 1, ttlMs: LEASE_TTL_MS },
  { name: SINK_DEFINITIONS_BUCKET, description: "sink definitions run by the hub's processes", history: 5 },
  { name: SINK_STATUS_BUCKET, description: "status reports of the processes running sinks", history: 1, ttlMs: SINK_STATUS_TTL_MS },
  { name: MQTT_SESSIONS_BUCKET, description: "MQTT sessions of the ingress", history: 1 },
  { name: MQTT_WILLS_BUCKET, description: "wills of connected MQTT clients", history: 1 },
  { name: MQTT_INSTANCES_BUCKET, description: "live MQTT ingress instances", history: 1, ttlMs: MQTT_INSTANCE_TTL_MS },
  { name: EDGE_SITES_BUCKET, description: "the latest status report of each edge site", history: 1 },
  { name: DEVICES_BUCKET, description: "the device registry: keys, metadata and live state of every device", history: 1 },
  { name: TWINS_BUCKET, description: "device twins: desired and reported state, versioned", history: 1 },
  { name: USED_NONCES_BUCKET, description: "nonces the identity service accepted once", history: 1, ttlMs: USED_NONCES_TTL_MS },
  { name: COMMAND_KEYS_BUCKET, description: "commands sent by idempotency key", history: 1, ttlMs: COMMAND_KEYS_TTL_MS },
];

/** The header that carries why a message went to REJECTED. */
export const REJECT_REASON_HEADER = "Fabric-Reject-Reason";

function streamConfig(def: StreamDefinition, replicas: number): Partial<StreamConfig> & { name: string } {
  return {
    name: def.name,
    subjects: def.subjects,
    description: def.description,
    retention: "limits",
    storage: "file",
    discard: "old",
    max_age: def.max_age,
    duplicate_window: def.duplicate_window,
    num_replicas: replicas,
    allow_direct: true,
  };
}

export interface EnsureResult {
  created: string[];
  updated: string[];
  unchanged: string[];
}

/**
 * Creates the hub's streams and KV buckets, or brings existing ones to the defined config: safe to run at
 * every start, never deletes data.
 */
export async function ensureHubStreams(nc: NatsConnection, jsm: JetStreamManager, replicas: number): Promise<EnsureResult> {
  const result: EnsureResult = { created: [], updated: [], unchanged: [] };
  for (const def of HUB_STREAMS) {
    const want = streamConfig(def, replicas);
    const existing = await jsm.streams.info(def.name).catch(() => undefined);
    if (existing === undefined) {
      await jsm.streams.add(want);
      result.created.push(def.name);
      continue;
    }
    const c = existing.config;
    const same =
      JSON.stringify(c.subjects) === JSON.stringify(want.subjects) &&
      c.max_age === want.max_age &&
      c.duplicate_window === want.duplicate_window &&
      c.num_replicas === want.num_replicas &&
      c.description === want.description;
    if (same) {
      result.unchanged.push(def.name);
    } else {
      await jsm.streams.update(def.name, { ...c, ...want });
      result.updated.push(def.name);
    }
  }
  await ensureRetainedStream(jsm, replicas, result);
  await ensureKvBuckets(nc, jsm, HUB_KV_BUCKETS.map((b) => b.name), replicas, result);
  return result;
}

/** The MQTT ingress's retained messages (the last per topic), created when missing. */
export async function ensureRetainedStream(jsm: JetStreamManager, replicas: number, result: EnsureResult = { created: [], updated: [], unchanged: [] }): Promise<EnsureResult> {
  const retained = await jsm.streams.info(MQTT_RETAINED_STREAM).catch(() => undefined);
  if (retained !== undefined) {
    result.unchanged.push(MQTT_RETAINED_STREAM);
    return result;
  }
  await jsm.streams.add({
    name: MQTT_RETAINED_STREAM,
    subjects: [`${MQTT_RETAINED_PREFIX}.>`],
    description: "MQTT retained messages, the last per topic",
    max_msgs_per_subject: 1,
    storage: "file",
    num_replicas: replicas,
    allow_direct: true,
    allow_rollup_hdrs: true,
  });
  result.created.push(MQTT_RETAINED_STREAM);
  return result;
}

/** These KV buckets of the fabric's (HUB_KV_BUCKETS), created when missing (an existing one is left as it is). */
export async function ensureKvBuckets(nc: NatsConnection, jsm: JetStreamManager, names: readonly string[], replicas: number, result: EnsureResult = { created: [], updated: [], unchanged: [] }): Promise<EnsureResult> {
  const kvm = new Kvm(nc);
  for (const b of HUB_KV_BUCKETS.filter((x) => names.includes(x.name))) {
    const streamName = `KV_${b.name}`;
    const exists = await jsm.streams.info(streamName).then(
      () => true,
      () => false,
    );
    if (exists) {
      result.unchanged.push(streamName);
    } else {
      await kvm.create(b.name, { description: b.description, history: b.history, replicas, ...(b.ttlMs === undefined ? {} : { ttl: b.ttlMs }) });
      result.created.push(streamName);
    }
  }
  return result;
}
