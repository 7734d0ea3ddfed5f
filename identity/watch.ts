import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import { errorMessage, type Logger } from "../fabric/core/index.js";
import type { AccountClaims } from "./claims.js";
import { identityMetrics } from "./metrics.js";
import { validateAccountJwt, type TrustAnchors } from "./validate.js";

export const ACCOUNT_LOOKUP_TIMEOUT_MS = 2_000; // 2 s

export interface AccountWatcher extends TrustAnchors {
  /** Makes sure the account's JWT is known (asks the hub's resolver once); false if the hub has none. */
  ensure(accountPublicKey: string): Promise<boolean>;
  /** Called with the new claims whenever a newer account JWT arrives. */
  onUpdate(listener: (claims: AccountClaims) => void): () => void;
  stop(): Promise<void>;
}

export interface AccountWatcherOptions {
  /** A connection into the system account as a `watcher` user. */
  connection: NatsConnection;
  operatorKeys: readonly string[];
  logger: Logger;
  /** Account JWTs known up front (from a keystore). */
  initial?: readonly string[];
}

/**
 * Keeps the current account JWTs for servers of the fabric's own (the MQTT ingress, the gRPC gateway): every
 * account JWT pushed to the hub (`$SYS.REQ.CLAIMS.UPDATE`, `$SYS.REQ.ACCOUNT.*.CLAIMS.UPDATE`) is seen as it is
 * pushed, checked against the operator keys, and kept if it is newer than the one held; listeners then cut off
 * the users it revokes. Unknown accounts are looked up from the hub's resolver.
 */
export function watchAccounts(options: AccountWatcherOptions): AccountWatcher {
  const { connection: nc, operatorKeys, logger } = options;
  const log = logger.child({ watcher: "accounts" });
  const jwts = new Map<string, { jwt: string; claims: AccountClaims }>();
  const listeners = new Set<(claims: AccountClaims) => void>();

  const offer = (jwt: string, source: string): void => {
    let claims: AccountClaims;
    try {
      claims = validateAccountJwt(jwt, operatorKeys);
    } catch (err) {
      log.warn({ source, err: errorMessage(err) }, "ignored an account JWT that does not validate");
      return;
    }
    const held = jwts.get(claims.sub);
    if (held !== undefined && held.claims.iat > claims.iat) return; // never go back to an older one
    if (held?.jwt === jwt) return;
    jwts.set(claims.sub, { jwt, claims });
    identityMetrics.accountUpdated(claims);
    for (const l of listeners) {
      try {
        l(claims);
      } catch (err) {
        log.error({ err: errorMessage(err) }, "account update listener failed");
      }
    }
  };
  for (const jwt of options.initial ?? []) offer(jwt, "initial");

  const subs: Subscription[] = ["$SYS.REQ.CLAIMS.UPDATE", "$SYS.REQ.ACCOUNT.*.CLAIMS.UPDATE"].map((subject) =>
    nc.subscribe(subject, {
      callback: (err, msg) => {
        if (err === null) offer(msg.string(), subject);
      },
    }),
  );

  return {
    operatorKeys,
    accountJwt: (pub) => jwts.get(pub)?.jwt,
    ensure: async (pub) => {
      if (jwts.has(pub)) return true;
      try {
        const m = await nc.request(`$SYS.REQ.ACCOUNT.${pub}.CLAIMS.LOOKUP`, "", { timeout: ACCOUNT_LOOKUP_TIMEOUT_MS });
        if (m.data.length > 0) offer(m.string(), "lookup");
      } catch (err) {
        log.warn({ account: pub, err: errorMessage(err) }, "account lookup failed");
      }
      return jwts.has(pub);
    },
    onUpdate: (l) => {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    stop: async () => {
      for (const s of subs) s.unsubscribe();
      await nc.flush().catch(() => undefined);
    },
  };
}
