import { Kvm, type KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { errorMessage, parseInput, type Logger } from "../fabric/core/index.js";
import { DEFINITIONS_BUCKET } from "./definitions.js";
import { windowDefinitionSchema, type WindowDefinition } from "./definition.js";
import { WindowGroup } from "./group.js";


async function bucket(nc: NatsConnection): Promise<KV> {
  return new Kvm(nc).open(DEFINITIONS_BUCKET);
}

/** Validates and stores a definition (every worker sees it); returns it as stored. */
/** `input` is validated here (a file, the CLI, the API all pass through). */
export async function saveDefinition(nc: NatsConnection, input: unknown): Promise<WindowDefinition> {
  const def = parseInput(windowDefinitionSchema, input, "window");
  await (await bucket(nc)).put(def.name, JSON.stringify(def));
  return def;
}

export async function listDefinitions(nc: NatsConnection): Promise<WindowDefinition[]> {
  const kv = await bucket(nc);
  const out: WindowDefinition[] = [];
  for await (const k of await kv.keys()) {
    const e = await kv.get(k);
    if (e === null || e.operation !== "PUT") continue;
    const parsed = windowDefinitionSchema.safeParse(e.json());
    if (parsed.success) out.push(parsed.data);
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

/** Removes a definition; its workers stop. Returns false if there was none. */
export async function removeDefinition(nc: NatsConnection, name: string): Promise<boolean> {
  const kv = await bucket(nc);
  const e = await kv.get(name);
  if (e === null || e.operation !== "PUT") return false;
  await kv.delete(name);
  return true;
}

/**
 * Joins the window group with every definition in KV, and follows the bucket: a new or changed definition
 * starts (or restarts) its worker, a removed one stops it. Several processes doing this share the partitions.
 */
export async function runDefinedWorkers(nc: NatsConnection, logger: Logger, options: { checkpointEveryMs?: number; memberId?: string } = {}): Promise<{ group: WindowGroup; stop(): Promise<void> }> {
  const log = logger.child({ component: "windows" });
  const kv = await bucket(nc);
  const group = await WindowGroup.join({ connection: nc, logger, ...options });
  const defs = new Map<string, WindowDefinition>();
  let chain: Promise<void> = Promise.resolve();
  const watch = await kv.watch();
  void (async () => {
    for await (const e of watch) {
      if (e.operation !== "PUT") {
        defs.delete(e.key);
      } else {
        const parsed = windowDefinitionSchema.safeParse(safeJson(e.string()));
        if (parsed.success) defs.set(e.key, parsed.data);
        else log.warn({ window: e.key, problem: parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ") }, "invalid window definition in KV: ignored");
      }
      if (e.delta !== 0) continue; // apply once the initial values are in
      const snapshot = [...defs.values()];
      chain = chain.then(() => group.setDefinitions(snapshot)).catch((err: unknown) => log.error({ err: errorMessage(err) }, "window definitions not applied"));
    }
  })();
  return {
    group,
    stop: async () => {
      watch.stop();
      await chain;
      await group.stop();
    },
  };
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}
