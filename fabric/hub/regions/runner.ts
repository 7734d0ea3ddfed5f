import { existsSync, rmSync, unwatchFile, watchFile } from "node:fs";
import { dirname } from "node:path";
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { ensurePrivateDir, errorMessage, gauge, writeSecretFile, type Logger } from "../../core/index.js";
import { issueLinkCreds, linkAccountName, pushAccounts, REGION_LINK_ROLE, regionSourceConsumer, revokeUsers, setDialedLinks, type AccountWatcher, type Keystore } from "../../../identity/index.js";
import { linkCredsFile, readRegionLinks, regionCopyStream, regionLinksFile, REGION_STREAM_KINDS, type RegionLink, type RegionStreamKind } from "./links.js";
import { startClaimsRelay } from "./relay.js";
import { dropUnlinkedConsumers, ensureLinkStreams, REGION_SOURCE_DOWN_MS } from "./streams.js";

/** A leaf remote of the region's servers: one per peer it dials, bound to the link's account. */
export interface RegionLeafRemote {
  urls: string[];
  account: string;
  credentials: string;
}

export interface RegionStreamStatus {
  kind: RegionStreamKind;
  /** This region's copy of the peer's stream. */
  copy: string;
  /** Messages in the copy. */
  messages: number;
  /** Messages the copy's source knows it has yet to take from the peer. */
  lag: number;
  /** Milliseconds since the copy's source last heard from the peer (-1: never). */
  activeMs: number;
  /** This region's messages the peer has yet to take (its consumer here: pending and unacknowledged). */
  backlog: number;
}

export interface RegionLinkStatus {
  peer: string;
  /** This region dials the peer, or the peer dials it; unknown when read from JetStream alone (`fabric status`). */
  dials: boolean | undefined;
  /** The peer was heard from within the last few heartbeats. */
  up: boolean;
  streams: RegionStreamStatus[];
  /** The last time the link could not be applied, why. */
  error?: string;
}

export interface RegionLinksRunner {
  status(): Promise<RegionLinkStatus[]>;
  /** Applies the links file now (the runner also does on every change of the file). */
  apply(): Promise<void>;
  stop(): Promise<void>;
}

const runners = new Set<RegionLinksRunner>();
const statuses = async (): Promise<RegionLinkStatus[]> => (await Promise.all([...runners].map((r) => r.status().catch(() => [])))).flat();
gauge<"peer">({
  name: "fabric_region_link_up",
  help: "1 while a linked peer region is heard from (its copy sources active within 5 s), else 0",
  labelNames: ["peer"],
  async collect() {
    this.reset();
    for (const l of await statuses()) this.set({ peer: l.peer }, l.up ? 1 : 0);
  },
});
for (const [name, help, value] of [
  ["fabric_region_lag_messages", "messages of a peer region's stream its copy here has yet to take", (s: RegionStreamStatus) => s.lag],
  ["fabric_region_backlog_messages", "messages of this region's stream a linked peer has yet to take", (s: RegionStreamStatus) => s.backlog],
  ["fabric_region_copy_messages", "messages in this region's copy of a peer region's stream", (s: RegionStreamStatus) => s.messages],
  ["fabric_region_source_active_seconds", "seconds since the copy of a peer's stream last heard from the peer (-1: never)", (s: RegionStreamStatus) => (s.activeMs < 0 ? -1 : s.activeMs / 1000)],
] as const) {
  gauge<"peer" | "stream">({
    name,
    help,
    labelNames: ["peer", "stream"],
    async collect() {
      this.reset();
      for (const l of await statuses()) for (const s of l.streams) this.set({ peer: l.peer, stream: REGION_STREAM_KINDS[s.kind].stream }, value(s));
    },
  });
}

/** A link whose state to read: whether this region dials it is known from the links file only. */
export type LinkToShow = Pick<RegionLink, "peer" | "streams"> & { dials?: boolean | undefined };

/** The links of a links file, to show. */
export function linksToShow(links: readonly RegionLink[]): LinkToShow[] {
  return links.map((l) => ({ peer: l.peer, streams: l.streams, dials: l.urls !== undefined }));
}

/**
 * The links a region has, found in JetStream alone (its copy streams `REGION_<peer>_<STREAM>`): for a status read
 * away from the hub's data directory. Whether this region dials is not known there.
 */
export async function discoverRegionLinks(jsm: JetStreamManager): Promise<LinkToShow[]> {
  const byPeer = new Map<string, RegionLink["streams"]>();
  for await (const si of jsm.streams.list()) {
    for (const [kind, k] of Object.entries(REGION_STREAM_KINDS) as [RegionStreamKind, (typeof REGION_STREAM_KINDS)[RegionStreamKind]][]) {
      const suffix = `_${k.stream}`;
      const name = si.config.name;
      if (!name.startsWith("REGION_") || !name.endsWith(suffix)) continue;
      const peer = name.slice("REGION_".length, -suffix.length);
      byPeer.set(peer, [...(byPeer.get(peer) ?? []), { kind }]);
    }
  }
  return [...byPeer.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([peer, streams]) => ({ peer, streams }));
}

/** Each link's state, read from JetStream: its copies' sources here and this region's consumers for the peer. */
export async function regionLinksStatus(
  jsm: JetStreamManager,
  links: readonly LinkToShow[],
  errors: ReadonlyMap<string, string> = new Map(),
): Promise<RegionLinkStatus[]> {
  return Promise.all(
    links.map(async (l) => {
      const streams = await Promise.all(
        l.streams.map(async (s): Promise<RegionStreamStatus> => {
          const copy = regionCopyStream(l.peer, s.kind);
          const si = await jsm.streams.info(copy).catch(() => undefined);
          const src = si?.sources?.[0];
          const ci = await jsm.consumers.info(REGION_STREAM_KINDS[s.kind].stream, regionSourceConsumer(l.peer)).catch(() => undefined);
          return {
            kind: s.kind,
            copy,
            messages: si?.state.messages ?? 0,
            lag: src?.lag ?? 0,
            activeMs: src === undefined || src.active < 0 ? -1 : Math.round(src.active / 1_000_000),
            backlog: ci === undefined ? 0 : ci.num_pending + ci.num_ack_pending,
          };
        }),
      );
      const error = errors.get(l.peer);
      return { peer: l.peer, dials: l.dials, up: streams.some((s) => s.activeMs >= 0 && s.activeMs < REGION_SOURCE_DOWN_MS), streams, ...(error === undefined ? {} : { error }) };
    }),
  );
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
    if (changed.length > 0) await pushAccounts(o.ks, { servers: o.urls, accounts: changed, logger: log });
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
  await apply();
  const file = regionLinksFile(o.dataDir);
  watchFile(file, { interval: 500 }, () => void apply().catch(() => undefined));

  const status = (): Promise<RegionLinkStatus[]> => regionLinksStatus(jsm, linksToShow(links), errors);
  const runner: RegionLinksRunner = {
    status,
    apply,
    stop: async () => {
      runners.delete(runner);
      unwatchFile(file);
      await queue.catch(() => undefined);
      await relay.stop();
    },
  };
  runners.add(runner);
  return runner;
}
