import { createHash } from "node:crypto";
import { Kvm, type KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { z } from "zod";
import { COMMAND_KEYS_BUCKET } from "../../streams/index.js";
import { isRevisionConflict, lazyRetrying } from "../core/index.js";

/**
 * What KV `cmd_keys` holds for an idempotency key of SendCommand: the command sent under it, and its stream
 * sequence once stored. `fingerprint` (name and payload) tells a repeat from another command reusing the key.
 */
const recordSchema = z.object({
  commandId: z.string(),
  fingerprint: z.string(),
  startedAt: z.number(),
  sequence: z.number().int().positive().optional(),
  /** The send under way failed (no acknowledgement): the next one with the key takes over at once. */
  failed: z.boolean().optional(),
});
export type CommandKeyRecord = z.infer<typeof recordSchema>;

export interface CommandKeyEntry {
  record: CommandKeyRecord;
  revision: number;
}

/** The KV key of an idempotency key: per target device, the key hashed (any characters, bounded length). */
export function commandKeyOf(site: string, device: string, key: string): string {
  return `${site}.${device}.${createHash("sha256").update(key, "utf8").digest("hex").slice(0, 40)}`;
}

export function fingerprintOf(name: string, payload: Uint8Array): string {
  return createHash("sha256").update(name, "utf8").update("\0").update(payload).digest("base64url");
}

/** The commands sent by idempotency key (KV `cmd_keys`, shared by every gateway), claimed with compare-and-set. */
export class CommandKeys {
  private readonly kv: () => Promise<KV>;

  constructor(nc: NatsConnection) {
    this.kv = lazyRetrying(() => new Kvm(nc).open(COMMAND_KEYS_BUCKET));
  }

  /** Claims `key` for a new command: its revision, or undefined when the key is held already. */
  async claim(key: string, record: CommandKeyRecord): Promise<number | undefined> {
    try {
      return await (await this.kv()).create(key, JSON.stringify(record));
    } catch (err) {
      if (isRevisionConflict(err)) return undefined;
      throw err;
    }
  }

  /** The key's record, or undefined when it expired (an unreadable one is dropped, so the key can be claimed again). */
  async get(key: string): Promise<CommandKeyEntry | undefined> {
    const kv = await this.kv();
    const e = await kv.get(key);
    if (e === null || e.operation !== "PUT") return undefined;
    let raw: unknown;
    try {
      raw = JSON.parse(e.string());
    } catch {
      raw = undefined;
    }
    const r = recordSchema.safeParse(raw);
    if (r.success) return { record: r.data, revision: e.revision };
    await kv.delete(key, { previousSeq: e.revision }).catch((err: unknown) => {
      if (!isRevisionConflict(err)) throw err;
    });
    return undefined;
  }

  /** Replaces the record if it is still at `revision`: the new revision, or undefined when another got there first. */
  async update(key: string, record: CommandKeyRecord, revision: number): Promise<number | undefined> {
    try {
      return await (await this.kv()).update(key, JSON.stringify(record), revision);
    } catch (err) {
      if (isRevisionConflict(err)) return undefined;
      throw err;
    }
  }
}
