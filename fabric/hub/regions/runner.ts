import { existsSync, rmSync, unwatchFile, watchFile } from "node:fs";
import { dirname } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { ensurePrivateDir, errorMessage, writeSecretFile, type Logger } from "../../core/index.js";
import { issueLinkCreds, linkAccountName, openClaimsPusher, pushAccounts, REGION_LINK_ROLE, revokeUsers, setDialedLinks, type AccountWatcher, type Keystore } from "../../../identity/index.js";
import { linkCredsFile, readRegionLinks, regionLinksFile, type RegionLink } from "./links.js";
import { regionMetrics } from "./metrics.js";
import { startClaimsRelay } from "./relay.js";
import { dropUnlinkedConsumers, ensureLinkStreams } from "./streams.js";
import { linksToShow, regionLinksStatus, type RegionLinkStatus } from "./status.js";

/** How often a runner looks whether a link came up (to announce its account JWTs to it at once). */
const REGION_UP_CHECK_MS = 1_000;

/** A leaf remote of the region's servers: one per peer it dials, bound to the link's account. */
export interface RegionLeafRemote {
  urls: string[];
  account: string;
  credentials: string;
}

export interface RegionLinksRunner {
  status(): Promise<RegionLinkStatus[]>;
  /** Applies the links file now (the runner also does on every change of the file). */
  apply(): Promise<void>;
  stop(): Promise<void>;
}

export interface RegionLinksOptions {
  ks: Keystore;
  region: string;
  dataDir: string;
  urls: string[];
  /** A connection into the region's tenant account. */
  nc: NatsConnection;
  watcher: AccountWatcher;
  replicas: number;
  /**
   * Gives the region's servers these leaf remotes (configs written again and reloaded when they change). Without
   * it (`fabric serve`) the servers' configs carry the remotes (`fabric config hub --link`) and their credentials.
   */
  applyRemotes?: ((remotes: RegionLeafRemote[]) => Promise<void>) | undefined;
  logger: Logger;
}

/**
 * The hub's side of region links (`fabric region link`): applies the links file of the data directory at start
 * and on every change, keeping the keystore's link accounts, the link credentials, the servers' leaf remotes,
 * the consumers and copy streams, and the relay of revocations in step with it.
 */
export async function startRegionLinks(o: RegionLinksOptions): Promise<RegionLinksRunner> {
  const log = o.logger.child({ component: "regions", region: o.region });
  const jsm = await jetstreamManager(o.nc);
  let links: RegionLink[] = [];
  const errors = new Map<string, string>();
  const relay = startClaimsRelay({ ks: o.ks, nc: o.nc, watcher: o.watcher, urls: o.urls, linked: () => links.length > 0, logger: log });

  const applyNow = async (): Promise<void> => {
    let wanted: RegionLink[];
    try {
      wanted = readRegionLinks(o.dataDir);
    } catch (err) {
      log.error({ err: errorMessage(err) }, "the region links file is invalid; the links stay as they are");
      return;
    }
    const dial = wanted.filter((l) => l.urls !== undefined);
    const region = o.ks.storeFile().region;
    const account = region?.account ?? "";
    // credentials of links no longer dialed: revoked, so the peer refuses them from now on
    for (const peer of region?.dials ?? []) {
      if (dial.some((l) => l.peer === peer)) continue;
      const name = `region-link-${o.region}-${peer}`;
      const had = o.ks.users(account).some((u) => u.name === name && u.revokedAt === undefined);
      if (had) {
        await o.ks.withLock(() => revokeUsers(o.ks, account, name, REGION_LINK_ROLE));
        await pushAccounts(o.ks, { servers: o.urls, accounts: [account], logger: log });
      }
      rmSync(linkCredsFile(o.dataDir, peer), { force: true });
      log.info({ peer, revoked: had }, "link to a peer region removed: its credential revoked");
    }
    const changed = await o.ks.withLock(() => setDialedLinks(o.ks, dial.map((l) => l.peer)));
    if (changed.length > 0) {
      const pusher = await openClaimsPusher(o.ks, { servers: o.urls, logger: log });
      try {
        for (const name of changed) await pusher.push(name);
        // the tenant account's imports changed: nats-server 2.15 then gets the permissions of the leaf users
        // connected to it wrong (the links peers dial into this region, the sites), so they dial again
        if (changed.includes(account)) await pusher.kickLeafs(account);
      } finally {
        await pusher.close();
      }
    }
    if (o.applyRemotes !== undefined) {
      for (const l of dial) {
        const path = linkCredsFile(o.dataDir, l.peer);
        if (existsSync(path)) continue;
        const c = await o.ks.withLock(() => issueLinkCreds(o.ks, l.peer));
        ensurePrivateDir(dirname(path));
        writeSecretFile(path, c.creds);
        log.info({ peer: l.peer, user: c.name }, "link credential issued");
      }
      await o.applyRemotes(dial.map((l) => ({ urls: l.urls ?? [], account: o.ks.account(linkAccountName(l.peer)).publicKey, credentials: linkCredsFile(o.dataDir, l.peer) })));
    }
    for (const l of wanted) {
      try {
        await ensureLinkStreams(jsm, o.region, l, o.replicas);
        errors.delete(l.peer);
      } catch (err) {
        errors.set(l.peer, errorMessage(err));
        log.warn({ peer: l.peer, err: errorMessage(err) }, "could not set up the streams of a region link");
      }
    }
    const dropped = await dropUnlinkedConsumers(jsm, new Set(wanted.map((l) => l.peer)));
    if (dropped.length > 0) log.info({ dropped }, "consumers of unlinked peer regions deleted");
    links = wanted;
    log.info({ links: wanted.map((l) => `${l.peer}${l.urls === undefined ? " (accepts)" : " (dials)"}`) }, "region links applied");
  };
  let queue: Promise<void> = Promise.resolve();
  const apply = (): Promise<void> => {
    const next = queue.then(applyNow);
    queue = next.catch((err: unknown) => log.error({ err: errorMessage(err) }, "could not apply the region links"));
    return next;
  };
  // a link that cannot be applied is logged and tried again at the next change of the file: the hub runs on
  await apply().catch(() => undefined);
  const file = regionLinksFile(o.dataDir);
  watchFile(file, { interval: 500 }, () => void apply().catch(() => undefined));

  // a link that comes up hears this region's account JWTs at once (what it missed while down)
  const wasUp = new Set<string>();
  const status = async (): Promise<RegionLinkStatus[]> => {
    const all = await regionLinksStatus(jsm, linksToShow(links), errors);
    if (all.some((l) => l.up && !wasUp.has(l.peer))) relay.announce();
    wasUp.clear();
    for (const l of all) if (l.up) wasUp.add(l.peer);
    return all;
  };
  const watchUp = setInterval(() => void status().catch(() => undefined), REGION_UP_CHECK_MS);
  watchUp.unref();
  const runner: RegionLinksRunner = {
    status,
    apply,
    stop: async () => {
      unregister();
      clearInterval(watchUp);
      unwatchFile(file);
      await queue.catch(() => undefined);
      await relay.stop();
    },
  };
  const unregister = regionMetrics.register(status);
  return runner;
}
