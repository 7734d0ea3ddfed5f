import { errorMessage } from "../fabric/core/index.js";
import type { Keystore, UserRecord } from "./keystore.js";
import { serverAccountViews } from "./push.js";

/** nats-server's default max_payload: an account JWT (revocations included) must fit in one message. */
export const DEFAULT_MAX_PAYLOAD_BYTES = 1_048_576; // 1 MiB
export const DEFAULT_EXPIRY_HORIZON_SEC = 7 * 86_400; // 7 d

export interface AccountStatus {
  name: string;
  publicKey: string;
  jwtIat: number;
  pushedIat: number;
  /** A change not yet acknowledged by every server. */
  pendingPush: boolean;
  jwtBytes: number;
  revocations: number;
  /** Bytes left before the account JWT reaches max_payload; each revocation costs about 70 bytes. */
  headroomBytes: number;
  roles: { role: string; key: string; users: number }[];
  /** What each server holds, when the hub was reachable. */
  servers: { server: string; iat: number | undefined; current: boolean }[];
}

export interface IdentityStatus {
  operator: string;
  hubUrls: string[];
  hubReachable: boolean;
  hubError?: string;
  accounts: AccountStatus[];
  /** Credentials that expire within the horizon (and are not revoked). */
  expiringSoon: Pick<UserRecord, "account" | "name" | "role" | "site" | "publicKey" | "expiresAt">[];
}

/** `fabric-id status`: expiries coming up, revocation-list headroom, and what every server holds. */
export async function identityStatus(
  ks: Keystore,
  options: { servers?: string[]; horizonSec?: number; maxPayloadBytes?: number } = {},
): Promise<IdentityStatus> {
  const store = ks.storeFile();
  const servers = options.servers ?? store.hubUrls;
  const now = Math.floor(Date.now() / 1000);
  const horizon = now + (options.horizonSec ?? DEFAULT_EXPIRY_HORIZON_SEC);
  const maxPayload = options.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES;
  let views: Awaited<ReturnType<typeof serverAccountViews>> = [];
  let hubError: string | undefined;
  if (servers.length > 0) {
    try {
      views = await serverAccountViews(ks, servers);
    } catch (err) {
      hubError = errorMessage(err);
    }
  } else {
    hubError = "no hub URL known";
  }
  const expiringSoon: IdentityStatus["expiringSoon"] = [];
  const accounts = ks.accounts().map((acc): AccountStatus => {
    const jwt = ks.accountJwt(acc.name);
    const users = ks.users(acc.name);
    for (const u of users) {
      if (u.revokedAt === undefined && u.expiresAt !== undefined && u.expiresAt > now && u.expiresAt <= horizon) {
        expiringSoon.push({ account: u.account, name: u.name, role: u.role, site: u.site, publicKey: u.publicKey, expiresAt: u.expiresAt });
      }
    }
    return {
      name: acc.name,
      publicKey: acc.publicKey,
      jwtIat: acc.jwtIat,
      pushedIat: acc.pushedIat,
      pendingPush: acc.pushedIat < acc.jwtIat,
      jwtBytes: jwt.length,
      revocations: Object.keys(acc.revocations).length,
      headroomBytes: maxPayload - jwt.length,
      roles: Object.entries(acc.roles).map(([role, r]) => ({ role, key: r.key, users: users.filter((u) => u.issuer === r.key && u.revokedAt === undefined).length })),
      servers: views.filter((v) => v.account === acc.name).map((v) => ({ server: v.server, iat: v.iat, current: v.iat === acc.jwtIat })),
    };
  });
  expiringSoon.sort((a, b) => (a.expiresAt ?? 0) - (b.expiresAt ?? 0));
  return { operator: store.operator.name, hubUrls: servers, hubReachable: hubError === undefined, ...(hubError === undefined ? {} : { hubError }), accounts, expiringSoon };
}
