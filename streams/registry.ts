import { Kvm, type KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { errorMessage, parseInput, type Logger } from "../fabric/core/index.js";
import { DEFINITIONS_BUCKET } from "./definitions.js";
import { windowDefinitionSchema, type WindowDefinition } from "./definition.js";
import { startWindowWorker, type WindowWorker } from "./worker.js";


async function bucket(nc: NatsConnection): Promise<KV> {
  return new Kvm(nc).open(DEFINITIONS_BUCKET);
}

/** Validates and stores a definition (every worker sees it); returns it as stored. */
/** `input` is validated here (a file, the CLI, the API all pass through). */
export async function saveDefinition(nc: NatsConnection, input: unknown): Promise<WindowDefinition> {
  const def = parseInput(windowDefinitionSchema, input, "window");
  if (def.window.kind === "session") throw new Error("session windows are not supported yet");
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
 * Runs a worker for every definition in KV, and follows the bucket: a new or changed definition starts (or
 * restarts) its worker, a removed one stops it.
 */
export async function runDefinedWorkers(nc: NatsConnection, logger: Logger): Promise<{ stop(): Promise<void> }> {
  const log = logger.child({ component: "windows" });
  const kv = await bucket(nc);
  const workers = new Map<string, { json: string; worker: WindowWorker }>();
  let chain: Promise<void> = Promise.resolve();
  const watch = await kv.watch();
  void (async () => {
    for await (const e of watch) {
      chain = chain.then(async () => {
        const running = workers.get(e.key);
        if (e.operation !== "PUT") {
          if (running !== undefined) {
            workers.delete(e.key);
            await running.worker.stop();
            log.info({ window: e.key }, "window removed: worker stopped");
          }
          return;
        }
        const json = e.string();
        if (running?.json === json) return;
        const parsed = windowDefinitionSchema.safeParse(JSON.parse(json));
        if (!parsed.success) {
          log.warn({ window: e.key }, "invalid window definition in KV: ignored");
          return;
        }
        if (running !== undefined) await running.worker.stop();
        try {
          workers.set(e.key, { json, worker: await startWindowWorker({ connection: nc, definition: parsed.data, logger }) });
          log.info({ window: e.key }, "window worker started");
        } catch (err) {
          log.error({ window: e.key, err: errorMessage(err) }, "window worker did not start");
        }
      });
    }
  })();
  return {
    stop: async () => {
      watch.stop();
      await chain;
      for (const w of workers.values()) await w.worker.stop();
      workers.clear();
    },
  };
}
