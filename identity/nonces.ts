import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { Kvm, type KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { z } from "zod";
import { USED_NONCES_BUCKET } from "../streams/index.js";
import { isRevisionConflict, lazyRetrying } from "../fabric/core/index.js";
import { ProvisionError } from "./errors.js";
import type { Keystore } from "./keystore.js";

/** How long a nonce may be used after it was issued. (KV `id_nonces` keeps a used one longer than that.) */
export const NONCE_TTL_MS = 60_000; // 1 min

/** What a nonce is for: it is refused for any other operation. */
export const NONCE_OPERATIONS = ["provision", "renew", "site", "exchange"] as const;
export type NonceOperation = (typeof NONCE_OPERATIONS)[number];
export const nonceOperationSchema = z.enum(NONCE_OPERATIONS, { error: `operation must be one of ${NONCE_OPERATIONS.join(", ")}` });

/**
 * The HMAC key of an account's nonces, derived from the account's seed, so every instance of the identity
 * service serving the account accepts every other's nonces.
 */
export function nonceKey(ks: Keystore, account: string): Buffer {
  const seed = ks.keyPair(ks.account(account).publicKey).seed;
  return createHmac("sha256", "fabric-identity-nonce").update(seed).digest();
}

/** `<operation>.<expiry ms>.<random>.<hmac>`: bound to its operation, stateless until it is used. */
export function makeNonce(key: Buffer, operation: NonceOperation, now = Date.now()): string {
  const body = `${operation}.${now + NONCE_TTL_MS}.${randomBytes(16).toString("base64url")}`;
  return `${body}.${createHmac("sha256", key).update(body).digest("base64url")}`;
}

/** Refuses a nonce this service did not issue, one that expired, or one issued for another operation. */
export function checkNonce(key: Buffer, nonce: string, operation: NonceOperation, now = Date.now()): void {
  const i = nonce.lastIndexOf(".");
  const body = nonce.slice(0, Math.max(0, i));
  const mac = Buffer.from(nonce.slice(i + 1), "base64url");
  const want = createHmac("sha256", key).update(body).digest();
  if (i < 0 || mac.length !== want.length || !timingSafeEqual(mac, want)) throw new ProvisionError("FABRIC_ERR_NONCE_INVALID", "nonce was not issued by this service");
  const [op, expiry] = body.split(".");
  if (op !== operation) throw new ProvisionError("FABRIC_ERR_NONCE_INVALID", `nonce was issued for ${op ?? "another operation"}, not ${operation}: ask for a nonce for ${operation}`);
  if (Number(expiry) < now) throw new ProvisionError("FABRIC_ERR_NONCE_INVALID", "nonce has expired: ask for a new one");
}

/**
 * The nonces used already, in KV `id_nonces` (shared by every instance of the service, entries expire after a
 * nonce's lifetime): a nonce is claimed with a create, which exactly one request wins.
 */
export class UsedNonces {
  private readonly kv: () => Promise<KV>;

  constructor(nc: NatsConnection) {
    this.kv = lazyRetrying(() => new Kvm(nc).open(USED_NONCES_BUCKET));
  }

  /** Claims `nonce` for this request; FABRIC_ERR_NONCE_USED when it was used before. */
  async claim(nonce: string): Promise<void> {
    const key = createHash("sha256").update(nonce, "utf8").digest("hex");
    try {
      await (await this.kv()).create(key, new Uint8Array(0));
    } catch (err) {
      if (isRevisionConflict(err)) {
        throw new ProvisionError("FABRIC_ERR_NONCE_USED", "nonce was used already: ask for a new one for every request");
      }
      throw new ProvisionError("FABRIC_ERR_UNAVAILABLE", "the nonce could not be recorded as used (JetStream unavailable?): try again with a new nonce", { cause: err });
    }
  }
}
