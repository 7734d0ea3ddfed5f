import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "../fabric/core/index.js";
import { jetstreamManager } from "@nats-io/jetstream";
import { CHECKPOINTS_BUCKET, DEFINITIONS_BUCKET, LEASES_BUCKET } from "./definitions.js";
import { definitionStore, safeJson } from "./kv-definitions.js";
import { windowDefinitionSchema, type WindowDefinition } from "./definition.js";
import { WindowGroup } from "./group.js";
import { kvKeys } from "./kv-keys.js";

/** Window definitions in KV window_defs, seen by every worker. */
const windowDefinitions = definitionStore(DEFINITIONS_BUCKET, windowDefinitionSchema, "window");

/** Validates `input` (a file, the CLI, the API all pass through here) and stores it: every worker sees it; returns it as stored. */
export function saveDefinition(nc: NatsConnection, input: unknown): Promise<WindowDefinition> {
  return windowDefinitions.save(nc, input);
}

export function listDefinitions(nc: NatsConnection): Promise<WindowDefinition[]> {
  return windowDefinitions.list(nc);
}

/** Removes a definition; its workers stop. Returns false if there was none. */
export function removeDefinition(nc: NatsConnection, name: string): Promise<boolean> {
  return windowDefinitions.remove(nc, name);
}

/**
 * Joins the window group with every definition in KV, and follows the bucket: a new or changed definition
 * starts (or restarts) its worker, a removed one stops it. Several processes doing this share the partitions.
 */
export async function runDefinedWorkers(nc: NatsConnection, logger: Logger, options: { checkpointEveryMs?: number; memberId?: string } = {}): Promise<{ group: WindowGroup; stop(): Promise<void> }> {
  const group = await WindowGroup.join({ connection: nc, logger, ...options });
  const following = await windowDefinitions.follow(nc, logger.child({ component: "windows" }), (defs) => group.setDefinitions(defs));
  return {
    group,
    stop: async () => {
      await following.stop();
      await group.stop();
    },
  };
}

export interface PartitionStatus {
  partition: number;
  /** The member holding its lease ("" when none does). */
  owner: string;
  /** The source sequence its last checkpoint includes. */
  seq: number;
}

export interface WindowStatus {
  name: string;
  partitions: PartitionStatus[];
  /** Live worker processes running this window. */
  members: string[];
  /** Source stream sequences after the least advanced partition's checkpoint (what a restart would replay). */
  behind: number;
}

/** Who owns each partition of a window, and how far its checkpoints are: what `fabric windows status` shows. */
export async function windowStatus(nc: NatsConnection, def: WindowDefinition): Promise<WindowStatus> {
  const kvm = new Kvm(nc);
  const leases = await kvm.open(LEASES_BUCKET);
  const checkpoints = await kvm.open(CHECKPOINTS_BUCKET);
  const partitions: PartitionStatus[] = [];
  for (let i = 0; i < def.partitions; i++) {
    const lease = await leases.get(`p.${def.name}.${i}`);
    const cp = await checkpoints.get(`${def.name}.p${i}`);
    const seq = cp?.operation === "PUT" && cp.length > 0 ? (cp.json<{ seq?: unknown }>().seq ?? 0) : 0;
    partitions.push({ partition: i, owner: lease?.operation === "PUT" ? lease.string() : "", seq: typeof seq === "number" ? seq : 0 });
  }
  const jsm = await jetstreamManager(nc);
  const members: string[] = [];
  for (const k of await kvKeys(jsm, LEASES_BUCKET, "m.>")) {
    const e = await leases.get(k);
    if (e?.operation !== "PUT") continue;
    const windows = (safeJson(e.string()) as { windows?: unknown } | undefined)?.windows;
    if (Array.isArray(windows) && windows.includes(def.name)) members.push(k.slice(2));
  }
  const from = Math.min(...partitions.map((p) => p.seq));
  const info = await jsm.streams.info(def.source.stream);
  return { name: def.name, partitions, members: members.sort(), behind: Math.max(0, info.state.last_seq - from) };
}
