import { counter, gauge, histogram } from "../fabric/core/index.js";
import type { AccountClaims } from "./claims.js";

/**
 * The identity layer's metrics: credentials issued, revocations seen, account JWT pushes, and the identity
 * service's requests and refusals. Revocations are counted once per process however many account watchers it
 * runs (the hub has several): the first JWT of an account a process sees is its baseline, each newer one adds the
 * keys it revokes that were not revoked before.
 */

const issued = counter<"role">({ name: "fabric_identity_credentials_issued_total", help: "user credentials issued (signed) by this process, by role", labelNames: ["role"] });
const revocations = counter<"account">({
  name: "fabric_identity_revocations_total",
  help: "user keys newly revoked in account JWTs this process received since it started, by account (public key)",
  labelNames: ["account"],
});
const revoked = new Map<string, { iat: number; keys: Set<string> }>();
gauge<"account">({
  name: "fabric_identity_revoked_keys",
  help: "user keys revoked in the newest account JWT this process holds, by account (public key)",
  labelNames: ["account"],
  collect() {
    this.reset();
    for (const [account, r] of revoked) this.set({ account }, r.keys.size);
  },
});
const pushes = counter<"result">({
  name: "fabric_identity_pushes_total",
  help: "account JWT pushes to the hub's servers, by result (complete: every server applied it; incomplete; failed)",
  labelNames: ["result"],
});
const pushLatency = histogram({ name: "fabric_identity_push_duration_seconds", help: "time from sending an account JWT to every server's answer (or the timeout)" });
const requests = counter<"operation" | "result">({
  name: "fabric_identity_requests_total",
  help: "identity service requests (nonce, provision, renew, site), by result (ok, refused, error)",
  labelNames: ["operation", "result"],
});
const refusals = counter<"operation" | "code">({
  name: "fabric_identity_refusals_total",
  help: "identity service requests refused (provisioning, renewal, site trust), by operation and fabric error code",
  labelNames: ["operation", "code"],
});

export const identityMetrics = {
  issued(role: string): void {
    issued.inc({ role });
  },
  /** An account JWT newer than the one held. */
  accountUpdated(claims: AccountClaims): void {
    const keys = Object.keys(claims.nats.revocations ?? {});
    const held = revoked.get(claims.sub);
    if (held !== undefined && held.iat > claims.iat) return;
    if (held !== undefined) {
      const added = keys.filter((k) => !held.keys.has(k)).length;
      if (added > 0) revocations.inc({ account: claims.sub }, added);
    }
    revoked.set(claims.sub, { iat: claims.iat, keys: new Set(keys) });
  },
  pushed(result: "complete" | "incomplete" | "failed", seconds: number): void {
    pushes.inc({ result });
    pushLatency.observe(seconds);
  },
  request(operation: string, result: "ok" | "refused" | "error", code?: string): void {
    requests.inc({ operation, result });
    if (result === "refused" && code !== undefined) refusals.inc({ operation, code });
  },
};
