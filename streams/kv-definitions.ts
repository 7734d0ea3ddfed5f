import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import type { z } from "zod";
import { errorMessage, parseInput, type Logger } from "../fabric/core/index.js";
import { kvKeys } from "./kv-keys.js";

/** A named document validated by one zod schema (a window definition, a sink definition). */
export type NamedSchema = z.ZodType<{ name: string }>;

/** Definitions kept in a KV bucket (key = name), each a JSON document of `schema`, and who follows them. */
export interface DefinitionStore<T extends { name: string }> {
  /** Validates `input` (a file, the CLI, the API all pass through here) and stores it; returns it as stored. */
  save(nc: NatsConnection, input: unknown): Promise<T>;
  /** Every valid definition, by name (an entry that no longer parses is left out). */
  list(nc: NatsConnection): Promise<T[]>;
  get(nc: NatsConnection, name: string): Promise<T | undefined>;
  /** Removes a definition; false if there was none. */
  remove(nc: NatsConnection, name: string): Promise<boolean>;
  /**
   * Follows the bucket: `apply` gets every definition once the initial values are in, then again after each
   * change (calls never overlap; a failure is logged and the next change applies again). An invalid entry is
   * logged and ignored (the previous version stays in force).
   */
  follow(nc: NatsConnection, log: Logger, apply: (defs: T[]) => Promise<void>): Promise<{ stop(): Promise<void> }>;
}

/** A KV entry's JSON, or undefined when it is none (a reader never trusts what a bucket holds). */
export function safeJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/** The store of `what` definitions (the word in messages and log fields: "window", "sink") in `bucket`. */
export function definitionStore<S extends NamedSchema>(bucket: string, schema: S, what: string): DefinitionStore<z.infer<S>> {
  type T = z.infer<S>;
  const open = (nc: NatsConnection): Promise<KV> => new Kvm(nc).open(bucket);
  const parse = (text: string): T | undefined => {
    const r = schema.safeParse(safeJson(text));
    return r.success ? r.data : undefined;
  };
  return {
    async save(nc, input) {
      const def = parseInput(schema, input, what);
      await (await open(nc)).put(def.name, JSON.stringify(def));
      return def;
    },
    async list(nc) {
      const kv = await open(nc);
      const out: T[] = [];
      for (const k of await kvKeys(await jetstreamManager(nc), bucket, ">")) {
        const e = await kv.get(k);
        if (e === null || e.operation !== "PUT") continue;
        const def = parse(e.string());
        if (def !== undefined) out.push(def);
      }
      return out.sort((a, b) => a.name.localeCompare(b.name));
    },
    async get(nc, name) {
      const e = await (await open(nc)).get(name).catch(() => null);
      return e === null || e.operation !== "PUT" ? undefined : parse(e.string());
    },
    async remove(nc, name) {
      const kv = await open(nc);
      const e = await kv.get(name);
      if (e === null || e.operation !== "PUT") return false;
      await kv.delete(name);
      return true;
    },
    async follow(nc, log, apply) {
      const kv = await open(nc);
      const defs = new Map<string, T>();
      let chain: Promise<void> = Promise.resolve();
      const watch = await kv.watch();
      void (async () => {
        for await (const e of watch) {
          if (e.operation !== "PUT") {
            defs.delete(e.key);
          } else {
            const r = schema.safeParse(safeJson(e.string()));
            if (r.success) defs.set(e.key, r.data);
            else log.warn({ [what]: e.key, problem: r.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ") }, `invalid ${what} definition in KV: ignored (the previous one, if any, stays)`);
          }
          if (e.delta !== 0) continue; // apply once the initial values are in
          const snapshot = [...defs.values()];
          chain = chain.then(() => apply(snapshot)).catch((err: unknown) => log.error({ err: errorMessage(err) }, `${what} definitions not applied`));
        }
      })();
      return {
        stop: async () => {
          watch.stop();
          await chain;
        },
      };
    },
  };
}
