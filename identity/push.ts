import type { NatsConnection } from "@nats-io/transport-node";
import { z } from "zod";
import { errorMessage, type Logger, silentLogger } from "../fabric/core/index.js";
import { connectWithCreds } from "./connect.js";
import { PushError } from "./errors.js";
import { issueUser } from "./issue.js";
import type { Keystore } from "./keystore.js";
import { SYSTEM_ACCOUNT_NAME } from "./init.js";
import { peekJwt } from "./jwt.js";
import { identityMetrics } from "./metrics.js";

export const CLAIMS_UPDATE_SUBJECT = "$SYS.REQ.CLAIMS.UPDATE";
export const SERVER_PING_SUBJECT = "$SYS.REQ.SERVER.PING";
export const ACCOUNTZ_PING_SUBJECT = "$SYS.REQ.SERVER.PING.ACCOUNTZ";
export const CONNZ_PING_SUBJECT = "$SYS.REQ.SERVER.PING.CONNZ";
export const LEAFZ_PING_SUBJECT = "$SYS.REQ.SERVER.PING.LEAFZ";
/** Connections of one user to kick, at most, per server. */
const KICK_CONNZ_LIMIT = 1_024;
/** The short-lived system user the fabric pushes with lives this long. */
export const ADMIN_CREDS_TTL_SEC = 120; // 2 min
export const DEFAULT_PUSH_TIMEOUT_MS = 3_000; // 3 s
/** How long to wait for more servers once the first answered a ping. */
const PING_STALL_MS = 150;

/**
 * A least-privilege system user for one operation: it may send `$SYS.REQ.>` requests and read its inbox,
 * nothing else, and expires in two minutes. It is minted fresh each time, never stored.
 */
export function mintAdminCreds(ks: Keystore, ttlSec = ADMIN_CREDS_TTL_SEC): string {
  const r = issueUser(ks, { account: SYSTEM_ACCOUNT_NAME, role: "admin", name: "fabric-admin", expiresInSec: ttlSec, ephemeral: true });
  if (r.creds === undefined) throw new PushError("admin credential was minted without a seed");
  return r.creds;
}

export interface ServerInfo {
  name: string;
  id: string;
}

const serverInfoSchema = z.looseObject({ name: z.string().default(""), id: z.string().default("") });
const claimUpdateResponseSchema = z.looseObject({
  server: serverInfoSchema,
  data: z.looseObject({ account: z.string().optional(), code: z.number().optional(), message: z.string().optional() }).optional(),
  error: z.looseObject({ account: z.string().optional(), code: z.number().optional(), description: z.string().optional() }).optional(),
});

export interface ServerPushResult {
  server: string;
  ok: boolean;
  message: string;
}

export interface AccountPushResult {
  account: string;
  iat: number;
  /** One entry per server that answered. */
  servers: ServerPushResult[];
  /** Every server known to the hub answered ok. */
  complete: boolean;
}

export interface PushReport {
  servers: ServerInfo[];
  accounts: AccountPushResult[];
}

/** A connection as a fresh short-lived admin of the system account; PushError when the hub is unreachable. */
export async function adminConnection(ks: Keystore, servers: string[]): Promise<NatsConnection> {
  if (servers.length === 0) throw new PushError("no hub URL known: run `fabric up`, or pass --server nats://host:port");
  try {
    return await connectWithCreds(mintAdminCreds(ks), { servers, name: "fabric admin", timeoutMs: 3_000 });
  } catch (err) {
    throw new PushError(`hub ${servers.join(", ")} is unreachable: ${errorMessage(err)}`, { cause: err });
  }
}

async function withAdminConnection<T>(ks: Keystore, servers: string[], fn: (nc: NatsConnection) => Promise<T>): Promise<T> {
  const nc = await adminConnection(ks, servers);
  try {
    return await fn(nc);
  } finally {
    await nc.close();
  }
}

/** Every server of the hub (cluster and connected leaf nodes that share the system account). */
export async function pingServers(nc: NatsConnection, timeoutMs = DEFAULT_PUSH_TIMEOUT_MS): Promise<ServerInfo[]> {
  const out: ServerInfo[] = [];
  const replies = await nc.requestMany(SERVER_PING_SUBJECT, "", { strategy: "stall", stall: PING_STALL_MS, maxWait: timeoutMs });
  for await (const m of replies) {
    const parsed = z.looseObject({ server: serverInfoSchema }).safeParse(m.json());
    if (parsed.success) out.push({ name: parsed.data.server.name, id: parsed.data.server.id });
  }
  return out;
}

/** An open admin connection that pushes account JWTs; for the CLI one push, for the hub and benchmarks many. */
export interface ClaimsPusher {
  /** The servers that answered the ping when the pusher opened. */
  readonly servers: ServerInfo[];
  /** Pushes one account's current JWT (or `jwt`, signed for it and not stored yet) and collects one reply per server. */
  push(account: string, jwt?: string): Promise<AccountPushResult>;
  /**
   * Disconnects every connection of these user keys in the account, on every server, at once (CONNZ by user,
   * then KICK by connection id). A server applying an account update decodes and verifies the JWT of every
   * client of the account (~0.1 ms each, in no particular order), so with a thousand devices connected the
   * revocation alone takes up to ~150 ms to reach its victim; the kick takes a few. The revocation pushed
   * right after keeps them out. Returns how many connections were kicked.
   */
  kick(account: string, userKeys: readonly string[]): Promise<number>;
  /**
   * Disconnects every leaf connection bound to the account on the hub's servers (the remotes dial again at once).
   * nats-server 2.15 gets a connected leaf user's permissions wrong once the account's imports or exports change;
   * a new connection gets them right. Returns how many were disconnected.
   */
  kickLeafs(account: string): Promise<number>;
  close(): Promise<void>;
}

const leafzSchema = z.looseObject({
  server: serverInfoSchema,
  data: z.looseObject({ leafs: z.array(z.looseObject({ id: z.number().int(), account: z.string().optional() })).nullish() }).optional(),
});

const connzByUserSchema = z.looseObject({
  server: serverInfoSchema,
  data: z.looseObject({ connections: z.array(z.looseObject({ cid: z.number().int() })).nullish() }).optional(),
});

/**
 * Pushes one account JWT on `$SYS.REQ.CLAIMS.UPDATE` over a system-account connection and collects the answers
 * of up to `expected` servers (each applies it, or says why not).
 */
export async function pushClaims(nc: NatsConnection, jwt: string, expected: number, timeoutMs = DEFAULT_PUSH_TIMEOUT_MS): Promise<ServerPushResult[]> {
  const results: ServerPushResult[] = [];
  const replies = await nc.requestMany(CLAIMS_UPDATE_SUBJECT, jwt, { strategy: "count", maxMessages: expected, maxWait: timeoutMs });
  for await (const m of replies) {
    const r = claimUpdateResponseSchema.safeParse(m.json());
    if (!r.success) continue;
    const ok = r.data.error === undefined && (r.data.data?.code ?? 200) === 200;
    results.push({ server: r.data.server.name, ok, message: ok ? (r.data.data?.message ?? "jwt updated") : (r.data.error?.description ?? "error") });
  }
  return results;
}

export async function openClaimsPusher(ks: Keystore, options: { servers: string[]; timeoutMs?: number; logger?: Logger }): Promise<ClaimsPusher> {
  const log = options.logger ?? silentLogger();
  const timeoutMs = options.timeoutMs ?? DEFAULT_PUSH_TIMEOUT_MS;
  const nc = await adminConnection(ks, options.servers);
  try {
    const servers = await pingServers(nc, timeoutMs);
    const expected = Math.max(1, servers.length);
    return {
      servers,
      push: async (name, signed) => {
        const jwt = signed ?? ks.accountJwt(name);
        const iat = Number(peekJwt(jwt)["iat"]);
        const started = performance.now();
        let results: ServerPushResult[];
        try {
          results = await pushClaims(nc, jwt, expected, timeoutMs);
        } catch (err) {
          identityMetrics.pushed("failed", (performance.now() - started) / 1000);
          throw err;
        }
        const complete = results.length >= expected && results.every((r) => r.ok);
        identityMetrics.pushed(complete ? "complete" : "incomplete", (performance.now() - started) / 1000);
        // a JWT not stored yet is marked pushed by the caller's store (its record carries jwtIat)
        if (complete && signed === undefined) ks.markPushed(name, iat);
        log.info({ account: name, iat, servers: results.length, expected, complete }, "account JWT pushed");
        return { account: name, iat, servers: results, complete };
      },
      kick: async (account, userKeys) => {
        const accountKey = ks.account(account).publicKey;
        const targets = await Promise.all(
          userKeys.map(async (user) => {
            const found: { server: string; cid: number }[] = [];
            const replies = await nc.requestMany(CONNZ_PING_SUBJECT, JSON.stringify({ user, acc: accountKey, limit: KICK_CONNZ_LIMIT }), {
              strategy: "count",
              maxMessages: expected,
              maxWait: timeoutMs,
            });
            for await (const m of replies) {
              const r = connzByUserSchema.safeParse(m.json());
              if (r.success) for (const c of r.data.data?.connections ?? []) found.push({ server: r.data.server.id, cid: c.cid });
            }
            return found;
          }),
        );
        const kicks = targets.flat();
        await Promise.all(
          kicks.map((k) =>
            nc.request(`$SYS.REQ.SERVER.${k.server}.KICK`, JSON.stringify({ cid: k.cid }), { timeout: timeoutMs }).catch((err: unknown) => {
              log.warn({ server: k.server, cid: k.cid, err: errorMessage(err) }, "kick failed; the revocation still applies");
            }),
          ),
        );
        log.info({ account, users: userKeys.length, kicked: kicks.length }, "revoked users disconnected");
        return kicks.length;
      },
      kickLeafs: async (account) => {
        const accountKey = ks.account(account).publicKey;
        const kicks: { server: string; cid: number }[] = [];
        const replies = await nc.requestMany(LEAFZ_PING_SUBJECT, JSON.stringify({ account: accountKey }), { strategy: "count", maxMessages: expected, maxWait: timeoutMs });
        for await (const m of replies) {
          const r = leafzSchema.safeParse(m.json());
          if (r.success) for (const l of r.data.data?.leafs ?? []) if (l.account === undefined || l.account === accountKey) kicks.push({ server: r.data.server.id, cid: l.id });
        }
        await Promise.all(
          kicks.map((k) =>
            nc.request(`$SYS.REQ.SERVER.${k.server}.KICK`, JSON.stringify({ cid: k.cid }), { timeout: timeoutMs }).catch((err: unknown) => {
              log.warn({ server: k.server, lid: k.cid, err: errorMessage(err) }, "could not disconnect a leaf connection");
            }),
          ),
        );
        log.info({ account, leafs: kicks.length }, "leaf connections of the account disconnected (they dial again)");
        return kicks.length;
      },
      close: () => nc.close(),
    };
  } catch (err) {
    await nc.close();
    throw err;
  }
}

/**
 * Pushes account JWTs to every server of the hub through `$SYS.REQ.CLAIMS.UPDATE`, collecting one reply per
 * server; with `kick`, first disconnects those (revoked) users everywhere. Accounts every server accepted are marked pushed in the keystore; the others stay pending and are
 * reported. Throws PushError only when the hub cannot be reached at all.
 */
export async function pushAccounts(
  ks: Keystore,
  options: { servers: string[]; accounts?: string[]; timeoutMs?: number; logger?: Logger; kick?: { account: string; users: readonly string[] } },
): Promise<PushReport> {
  const pusher = await openClaimsPusher(ks, options);
  try {
    if (options.kick !== undefined && options.kick.users.length > 0) await pusher.kick(options.kick.account, options.kick.users);
    const accounts: AccountPushResult[] = [];
    for (const name of options.accounts ?? ks.accounts().map((a) => a.name)) accounts.push(await pusher.push(name));
    return { servers: pusher.servers, accounts };
  } finally {
    await pusher.close();
  }
}

export interface ServerAccountView {
  server: string;
  account: string;
  /** `iat` of the account JWT the server holds, or undefined when it has not loaded the account. */
  iat: number | undefined;
}

const accountzSchema = z.looseObject({
  server: serverInfoSchema,
  data: z
    .looseObject({
      account_detail: z.looseObject({ jwt: z.string().optional(), decoded_jwt: z.looseObject({ iat: z.number().optional() }).optional() }).optional(),
    })
    .optional(),
});

/** For every server, the `iat` of the account JWT it holds for each account. */
export async function serverAccountViews(ks: Keystore, servers: string[], timeoutMs = DEFAULT_PUSH_TIMEOUT_MS): Promise<ServerAccountView[]> {
  return withAdminConnection(ks, servers, async (nc) => {
    const count = Math.max(1, (await pingServers(nc, timeoutMs)).length);
    const views: ServerAccountView[] = [];
    for (const acc of ks.accounts()) {
      const replies = await nc.requestMany(ACCOUNTZ_PING_SUBJECT, JSON.stringify({ account: acc.publicKey }), {
        strategy: "count",
        maxMessages: count,
        maxWait: timeoutMs,
      });
      for await (const m of replies) {
        const r = accountzSchema.safeParse(m.json());
        if (!r.success) continue;
        const detail = r.data.data?.account_detail;
        const iat = detail?.decoded_jwt?.iat ?? (detail?.jwt === undefined ? undefined : Number(peekJwt(detail.jwt)["iat"]));
        views.push({ server: r.data.server.name, account: acc.name, iat });
      }
    }
    return views;
  });
}
