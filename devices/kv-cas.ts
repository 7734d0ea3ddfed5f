import type { KV, KvEntry } from "@nats-io/kv";
import { isRevisionConflict } from "../fabric/core/index.js";

/** How often a change is tried again when another process changed the entry meanwhile. */
const MAX_CAS_TRIES = 10;

/**
 * A compare-and-set change of one KV entry: `read` makes the value from what is held (undefined: nothing yet),
 * `change` the next one (undefined: leave it); written at the revision it was read at, read again and changed
 * again when another writer came first. `conflict` decides what a lost race means (default: try again).
 */
export async function casUpdate<T>(
  kv: KV,
  key: string,
  read: (entry: KvEntry | undefined) => T,
  change: (current: T) => T | undefined,
  conflict: () => void = () => undefined,
): Promise<T> {
  for (let i = 0; ; i++) {
    const e = await kv.get(key);
    const held = e !== null && e.operation === "PUT" ? e : undefined;
    const current = read(held);
    const next = change(current);
    if (next === undefined) return current;
    try {
      if (held === undefined) await kv.create(key, JSON.stringify(next));
      else await kv.update(key, JSON.stringify(next), held.revision);
      return next;
    } catch (err) {
      if (!isRevisionConflict(err) || i >= MAX_CAS_TRIES) throw err;
      conflict();
    }
  }
}
