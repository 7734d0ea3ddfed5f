import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import { errorMessage, type Logger } from "../../core/index.js";
import { regionMetrics } from "./metrics.js";
import { adoptRevocations, openClaimsPusher, regionSubjects, validateAccountJwt, type AccountWatcher, type ClaimsPusher, type Keystore } from "../../../identity/index.js";

/** A relay's admin connection is replaced after this long (its short-lived admin credential expires after 2 min)… */
const PUSHER_REFRESH_MS = 60_000;
/** …and not used past this age. */
const PUSHER_MAX_AGE_MS = 100_000;
/**
 * A region sends its current account JWTs again this often while linked (and when a link comes up): an update
 * sent while a link was cut reaches no one, and the peer learns of it from the next announcement.
 */
export const CLAIMS_ANNOUNCE_MS = 10_000;

/**
 * Revocations across regions. Every account JWT this region's servers take (pushed by `fabric-id`, the identity
 * service or this relay) is sent to the linked peers on `$REGION.claims.out`. One arriving from a peer is checked
 * against the operator; its revocations this region lacks are taken into the region's keystore, the account's
 * JWT here is signed again (each region's tenant JWT has its own links' imports, so a peer's JWT is never pushed
 * as it is) and pushed, and nats-server disconnects the revoked users. A region that knew them all stays silent,
 * which ends the relay in any topology, rings included.
 */
export function startClaimsRelay(o: { ks: Keystore; nc: NatsConnection; watcher: AccountWatcher; urls: string[]; linked: () => boolean; logger: Logger }): {
  /** Sends the region's current account JWTs to its peers now (a link came up). */
  announce(): void;
  stop(): Promise<void>;
} {
  const log = o.logger.child({ component: "region-claims" });
  const operatorKeys = [o.ks.storeFile().operator.publicKey];
  // one admin connection kept open, replaced in the background before its credential expires: a revocation
  // never waits for a new one (opening one waits for the servers' answers to a ping)
  let current: { pusher: ClaimsPusher; at: number } | undefined;
  let opening: Promise<ClaimsPusher> | undefined;
  const open = (): Promise<ClaimsPusher> => {
    opening ??= openClaimsPusher(o.ks, { servers: o.urls, logger: log }).then(
      (pusher) => {
        const old = current;
        current = { pusher, at: Date.now() };
        opening = undefined;
        void old?.pusher.close().catch(() => undefined);
        return pusher;
      },
      (err: unknown) => {
        opening = undefined;
        throw err;
      },
    );
    return opening;
  };
  const getPusher = (): Promise<ClaimsPusher> => {
    if (current !== undefined && Date.now() - current.at < PUSHER_MAX_AGE_MS) {
      if (Date.now() - current.at > PUSHER_REFRESH_MS) void open().catch(() => undefined);
      return Promise.resolve(current.pusher);
    }
    return open();
  };
  const refresh = setInterval(() => {
    if (o.linked()) void getPusher().catch(() => undefined);
  }, PUSHER_REFRESH_MS / 4);
  refresh.unref();

  let queue: Promise<unknown> = Promise.resolve();
  const send = (accountKey: string): void => {
    const account = o.ks.accountByKey(accountKey);
    if (account === undefined || account.link !== undefined) return;
    const jwt = o.watcher.accountJwt(accountKey);
    if (jwt === undefined) return;
    o.nc.publish(regionSubjects.claimsOut, jwt);
    regionMetrics.relayed("out", "sent");
  };
  const announce = (): void => {
    if (!o.linked()) return;
    for (const a of o.ks.accounts()) {
      if (a.link !== undefined) continue;
      // the JWT this region's servers hold (the watcher looks it up once), else the keystore's
      void o.watcher.ensure(a.publicKey).then(() => send(a.publicKey));
    }
  };
  const announcer = setInterval(announce, CLAIMS_ANNOUNCE_MS);
  announcer.unref();
  const unlisten = o.watcher.onUpdate((claims) => {
    if (o.linked()) send(claims.sub);
  });
  const sub: Subscription = o.nc.subscribe(regionSubjects.claimsInAll, {
    callback: (err, m) => {
      if (err !== null) return;
      const started = performance.now();
      const from = m.subject.split(".")[3] ?? "?";
      let claims;
      try {
        claims = validateAccountJwt(m.string(), operatorKeys);
      } catch (e) {
        regionMetrics.relayed("in", "invalid");
        log.warn({ from, err: errorMessage(e) }, "ignored an account update from a peer region that does not validate");
        return;
      }
      const c = claims;
      queue = queue.then(async () => {
        const pusher = await getPusher();
        const r = await o.ks.withLock(async () => {
          const adopted = adoptRevocations(o.ks, c);
          if (adopted === undefined) return undefined;
          // pushed first, stored after: the servers disconnect the revoked users without waiting for the disk
          const pushed = await pusher.push(adopted.account, adopted.jwt);
          adopted.store(pushed.complete);
          return { account: adopted.account, complete: pushed.complete };
        });
        if (r === undefined) {
          regionMetrics.relayed("in", "known");
          return;
        }
        regionMetrics.relayed("in", "adopted");
        regionMetrics.applied((performance.now() - started) / 1000);
        log.info({ from, account: r.account, complete: r.complete }, "revocations from a peer region adopted and pushed");
      }).catch((e: unknown) => log.warn({ from, err: errorMessage(e) }, "could not adopt an account update from a peer region"));
    },
  });
  return {
    announce,
    stop: async () => {
      clearInterval(refresh);
      clearInterval(announcer);
      unlisten();
      sub.unsubscribe();
      await queue.catch(() => undefined);
      await opening?.catch(() => undefined);
      await current?.pusher.close().catch(() => undefined);
    },
  };
}
