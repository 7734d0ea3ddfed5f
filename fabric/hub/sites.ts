import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import { assertToken, errorMessage, silentLogger, subjects, type Logger } from "../core/index.js";
import { dropSiteSource, putSiteSource, siteSourceCurrent } from "./site-sources.js";
import type { AccountWatcher } from "../../identity/index.js";
import {
  DEFAULT_SITE_STREAMS,
  EDGE_STREAMS,
  SITE_STREAM_KINDS,
  siteRegistrationSchema,
  siteReportSchema,
  sourceRestartRequestSchema,
  sourcedSites,
  type SiteReport,
  type SiteStreamKind,
} from "../../leafnode-config/index.js";
import { EDGE_SITES_BUCKET } from "../../streams/index.js";

/** The hub restarts a site's source of one stream at most this often, however often the site asks. */
export const SOURCE_RESTART_MIN_MS = 10_000;

export interface SiteSourceState {
  /** Messages the hub knows it has yet to source. */
  lag: number;
  /** Milliseconds since the source last delivered (-1: never). */
  activeMs: number;
}

export interface SiteInfo {
  site: string;
  sources: Partial<Record<SiteStreamKind, SiteSourceState>>;
  /** The site's latest report, when it sent one. */
  report?: SiteReport;
}

/**
 * Sources the site's streams of these kinds into the hub's (EVENTS, TELEMETRY, AGGREGATES) through its durable
 * consumers, and stops sourcing its other kinds (idempotent).
 */
export async function addSite(nc: NatsConnection, site: string, kinds: readonly SiteStreamKind[] = DEFAULT_SITE_STREAMS, log: Logger = silentLogger()): Promise<void> {
  assertToken(site, "site");
  const jsm = await jetstreamManager(nc);
  for (const kind of SITE_STREAM_KINDS) {
    const c = (await jsm.streams.info(EDGE_STREAMS[kind].hub)).config;
    if (!kinds.includes(kind)) await dropSiteSource(jsm, c, site);
    else if (!siteSourceCurrent(c, site, kind)) await putSiteSource(nc, jsm, c, site, kind, log);
  }
}

/**
 * Starts the hub's sources of a site's streams again: each is taken off its stream and put back as the fabric
 * sets it (putSiteSource), so nats-server sets up a new source at once, with none of the retry backoff an old
 * one may have built up. Only sources the hub has: a site removed by `fabric site rm` stays removed. Returns the
 * kinds restarted.
 */
export async function restartSiteSources(nc: NatsConnection, site: string, kinds: readonly SiteStreamKind[], log: Logger): Promise<SiteStreamKind[]> {
  assertToken(site, "site");
  const jsm = await jetstreamManager(nc);
  const restarted: SiteStreamKind[] = [];
  for (const kind of kinds) {
    const c = (await jsm.streams.info(EDGE_STREAMS[kind].hub)).config;
    if (!sourcedSites(c.sources).includes(site)) continue;
    await putSiteSource(nc, jsm, c, site, kind, log);
    restarted.push(kind);
  }
  return restarted;
}

/** Takes the site's sources off the hub's streams; what was sourced stays. Returns whether it had any. */
export async function removeSite(nc: NatsConnection, site: string): Promise<boolean> {
  assertToken(site, "site");
  const jsm = await jetstreamManager(nc);
  let had = false;
  for (const kind of SITE_STREAM_KINDS) {
    if (await dropSiteSource(jsm, (await jsm.streams.info(EDGE_STREAMS[kind].hub)).config, site)) had = true;
  }
  if (had) await (await sitesKv(nc)).purge(site).catch(() => undefined);
  return had;
}

async function sitesKv(nc: NatsConnection) {
  return new Kvm(nc).open(EDGE_SITES_BUCKET);
}

async function sourceStates(jsm: JetStreamManager, kind: SiteStreamKind): Promise<Map<string, SiteSourceState>> {
  const si = await jsm.streams.info(EDGE_STREAMS[kind].hub);
  const out = new Map<string, SiteSourceState>();
  for (const s of si.sources ?? []) {
    const site = sourcedSites([s])[0];
    if (site !== undefined) out.set(site, { lag: s.lag, activeMs: s.active < 0 ? -1 : Math.round(s.active / 1_000_000) });
  }
  return out;
}

/** The sites the hub sources, with their sources' state and latest report. */
export async function listSites(nc: NatsConnection): Promise<SiteInfo[]> {
  const jsm = await jetstreamManager(nc);
  const states = Object.fromEntries(await Promise.all(SITE_STREAM_KINDS.map(async (k) => [k, await sourceStates(jsm, k)] as const))) as Record<SiteStreamKind, Map<string, SiteSourceState>>;
  const kv = await sitesKv(nc);
  const names = [...new Set(SITE_STREAM_KINDS.flatMap((k) => [...states[k].keys()]))].sort();
  const out: SiteInfo[] = [];
  for (const site of names) {
    const e = await kv.get(site).catch(() => null);
    const parsed = e !== null && e.operation === "PUT" ? siteReportSchema.safeParse(e.json()) : undefined;
    out.push({
      site,
      sources: Object.fromEntries(SITE_STREAM_KINDS.flatMap((k) => (states[k].has(site) ? [[k, states[k].get(site)]] : []))),
      ...(parsed?.success === true ? { report: parsed.data } : {}),
    });
  }
  return out;
}

/** The sites the hub sources now (from its streams' sources). */
async function sourcedSiteNames(jsm: JetStreamManager): Promise<string[]> {
  const all = await Promise.all(SITE_STREAM_KINDS.map(async (k) => sourcedSites((await jsm.streams.info(EDGE_STREAMS[k].hub)).config.sources)));
  return [...new Set(all.flat())];
}

/**
 * The hub's side of its sites: a site's agent asks on `$FABRIC.edge.<site>.register` to be sourced (only the
 * site's own leaf credential may publish there), and its status reports are kept in KV `edge_sites`. With an
 * account watcher, every change of the account's JWT (a revocation) is told to every site at once
 * (`$FABRIC.edge.<site>.trust`), so linked sites apply it within milliseconds rather than at their next sync.
 */
export async function serveSites(nc: NatsConnection, logger: Logger, trust?: { watcher: AccountWatcher; accountKey: string }): Promise<{ stop(): void }> {
  const log = logger.child({ component: "sites" });
  const kv = await sitesKv(nc);
  const siteOf = (subject: string): string => subject.split(".")[2] ?? "";
  // stream updates of this process one at a time (each rewrites a stream's whole source list)
  let updates: Promise<unknown> = Promise.resolve();
  const serially = <T>(fn: () => Promise<T>): Promise<T> => {
    const next = updates.then(fn, fn);
    updates = next.catch(() => undefined);
    return next;
  };
  const lastRestart = new Map<string, number>();
  const subs: Subscription[] = [
    nc.subscribe(subjects.edge.allRegister, {
      callback: (_err, m) => {
        const site = siteOf(m.subject);
        let kinds: readonly SiteStreamKind[] = DEFAULT_SITE_STREAMS;
        try {
          if (m.data.length > 0) kinds = siteRegistrationSchema.parse(m.json()).streams;
        } catch (err) {
          m.respond(JSON.stringify({ error: `bad registration: ${errorMessage(err)}` }));
          return;
        }
        serially(() => addSite(nc, site, kinds, log)).then(
          () => {
            log.info({ site, streams: kinds }, "site registered: the hub sources its streams");
            m.respond(JSON.stringify({ ok: true }));
          },
          (err: unknown) => {
            log.warn({ site, err: errorMessage(err) }, "site registration failed");
            m.respond(JSON.stringify({ error: errorMessage(err) }));
          },
        );
      },
    }),
    nc.subscribe(subjects.edge.allRestart, {
      callback: (_err, m) => {
        const site = siteOf(m.subject);
        let kinds: SiteStreamKind[];
        try {
          kinds = sourceRestartRequestSchema.parse(m.json()).streams;
        } catch (err) {
          m.respond(JSON.stringify({ error: `bad restart request: ${errorMessage(err)}` }));
          return;
        }
        // a site gets a restart of a source at most every SOURCE_RESTART_MIN_MS: each is two stream updates
        const now = Date.now();
        const due = kinds.filter((k) => now - (lastRestart.get(`${site}.${k}`) ?? 0) >= SOURCE_RESTART_MIN_MS);
        for (const k of due) lastRestart.set(`${site}.${k}`, now);
        serially(() => restartSiteSources(nc, site, due, log)).then(
          (restarted) => {
            if (restarted.length > 0) log.warn({ site, streams: restarted }, "restarted the hub's sources of a site at its request (a backlog its sources did not take)");
            m.respond(JSON.stringify({ restarted }));
          },
          (err: unknown) => {
            log.warn({ site, err: errorMessage(err) }, "could not restart the sources of a site");
            m.respond(JSON.stringify({ error: errorMessage(err) }));
          },
        );
      },
    }),
    nc.subscribe(subjects.edge.allStatus, {
      callback: (_err, m) => {
        const site = siteOf(m.subject);
        let report: SiteReport;
        try {
          report = siteReportSchema.parse(m.json());
        } catch (err) {
          log.debug({ site, err: errorMessage(err) }, "ignored a malformed site report");
          return;
        }
        if (report.site !== site) return;
        kv.put(site, JSON.stringify(report)).catch((err: unknown) => log.debug({ site, err: errorMessage(err) }, "could not keep a site report"));
      },
    }),
  ];
  const jsm = await jetstreamManager(nc);
  const unlisten = trust?.watcher.onUpdate((claims) => {
    if (claims.sub !== trust.accountKey) return;
    sourcedSiteNames(jsm).then(
      (sites) => {
        for (const site of sites) nc.publish(subjects.edge.trust(site));
        log.debug({ sites: sites.length }, "sites told of an account update");
      },
      (err: unknown) => log.warn({ err: errorMessage(err) }, "could not tell the sites of an account update"),
    );
  });
  return {
    stop: () => {
      unlisten?.();
      subs.forEach((s) => s.unsubscribe());
    },
  };
}
