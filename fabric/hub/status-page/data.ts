import { DeviceRegistry } from "../../../devices/index.js";
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { errorMessage, type Logger } from "../../core/index.js";
import { connectWithCreds, type Keystore } from "../../../identity/index.js";
import { listDefinitions, windowStatus } from "../../../streams/index.js";
import { hubStatus, type IngressInstanceStatus, type ServerStatus } from "../status.js";

/** Snapshots are taken at most this often, however many pages ask: a request in between gets the last one. */
export const MIN_SAMPLE_INTERVAL_MS = 1_000; // 1 s
/** Rates are taken over the samples of about this long (at least MIN_SAMPLE_INTERVAL_MS apart). */
export const RATE_WINDOW_MS = 10_000; // 10 s
/** How many revocations the page lists, latest first. */
export const RECENT_REVOCATIONS = 20;
/** The streams a site's ingest rate counts (its subjects' messages there). */
const SITE_INGEST_STREAMS = [
  { stream: "TELEMETRY", prefix: "telemetry" },
  { stream: "EVENTS", prefix: "events" },
] as const;

/** What a gRPC gateway of this process has open now. */
export interface GrpcActivity {
  calls: number;
  streams: number;
}

export interface StatusPageStream {
  account: string;
  name: string;
  messages: number;
  bytes: number;
  /** Messages per second over the last samples (null until there are two, or after a purge). */
  rate: number | null;
  consumers: { name: string; pending: number; ackPending: number }[];
}

export interface StatusPageSite {
  site: string;
  /** The link as the site last reported it (undefined: no report yet). */
  link?: "up" | "down";
  linkSince?: number;
  reportedAt?: number;
  /** Messages the site holds that the hub has not got yet (its report), by stream kind. */
  backlog: Record<string, number>;
  /** Messages the hub knows it has yet to source from the site, by stream kind. */
  sourceLag: Record<string, number>;
  /** Its telemetry and events stored at the hub per second (null until there are two samples). */
  rate: number | null;
}

export interface StatusPageRevocation {
  account: string;
  publicKey: string;
  name?: string;
  role?: string;
  site?: string;
  /** ms since epoch. */
  at: number;
}

export interface StatusPageWindow {
  name: string;
  members: string[];
  partitions: number;
  /** Partitions that have no owner now. */
  unowned: number;
  behind: number;
}

export interface StatusPageDevice {
  name: string;
  site: string;
  online: boolean;
  protocol: string;
  lastSeen: number;
  metadata: Record<string, string>;
}

/** The page lists at most this many devices (online first). */
export const STATUS_PAGE_DEVICES = 200;

/** GET /status.json: what the status page shows. */
export interface StatusPageData {
  at: number;
  servers: ServerStatus[];
  streams: StatusPageStream[];
  clients: { byRole: Record<string, number>; mqtt: number | null; grpc: GrpcActivity | null };
  ingress: IngressInstanceStatus[];
  windows: StatusPageWindow[];
  sites: StatusPageSite[];
  /** The device registry: the first devices (online first), and how many there are and are online. */
  devices: { total: number; online: number; shown: StatusPageDevice[] };
  revocations: StatusPageRevocation[];
  /** Parts that could not be read this time, and why. */
  problems: string[];
}

export interface StatusSourceOptions {
  keystore: Keystore;
  servers: string[];
  /** A tenant credential (creds text): edge sites, MQTT ingress instances, window workers and site rates. */
  tenantCreds?: string;
  /** Open calls and streams of the gRPC gateway in this process, if it runs one. */
  grpcActivity?: () => GrpcActivity;
  logger: Logger;
}

export interface StatusSource {
  snapshot(): Promise<StatusPageData>;
  close(): Promise<void>;
}

interface Sample {
  at: number;
  counts: Map<string, number>;
}

/** Per second over the window, from the oldest sample at least MIN_SAMPLE_INTERVAL_MS older than `now`. */
export function rateOf(samples: readonly Sample[], key: string, now: Sample): number | null {
  const cur = now.counts.get(key);
  const old = samples.find((s) => s.at >= now.at - RATE_WINDOW_MS && s.at <= now.at - MIN_SAMPLE_INTERVAL_MS && s.counts.has(key));
  const before = old?.counts.get(key);
  if (old === undefined || cur === undefined || before === undefined || cur < before) return null;
  return (cur - before) / ((now.at - old.at) / 1_000);
}

/** The latest revocations of every account, with the revoked user's name and role where the keystore has it. */
export function recentRevocations(ks: Keystore, limit = RECENT_REVOCATIONS): StatusPageRevocation[] {
  const all = ks.accounts().flatMap((a) => Object.entries(a.revocations).map(([publicKey, sec]) => ({ account: a.name, publicKey, at: sec * 1_000 })));
  return all
    .sort((a, b) => b.at - a.at || a.publicKey.localeCompare(b.publicKey))
    .slice(0, limit)
    .map((r) => {
      const u = ks.user(r.account, r.publicKey);
      return { ...r, ...(u === undefined ? {} : { name: u.name, role: u.role, ...(u.site === undefined ? {} : { site: u.site }) }) };
    });
}

/** Messages stored at the hub under the site's data subjects (a subject-filtered stream info per stream). */
async function siteMessages(jsm: JetStreamManager, site: string): Promise<number> {
  let n = 0;
  for (const { stream, prefix } of SITE_INGEST_STREAMS) {
    const info = await jsm.streams.info(stream, { subjects_filter: `${prefix}.${site}.>` });
    for (const c of Object.values(info.state.subjects ?? {})) n += c;
  }
  return n;
}

/**
 * The status page's data, from what `fabric status` gathers (servers, JetStream, streams, consumers, clients by
 * role, MQTT ingress instances, edge sites) plus window workers, per-stream and per-site rates and the recent
 * revocations. Snapshots are shared by all requests within MIN_SAMPLE_INTERVAL_MS; nothing runs while no one asks.
 */
export function createStatusSource(o: StatusSourceOptions): StatusSource {
  const log = o.logger.child({ component: "status-page" });
  const samples: Sample[] = [];
  let last: { at: number; data: Promise<StatusPageData> } | undefined;
  let tenant: Promise<NatsConnection> | undefined;
  const tenantConnection = (): Promise<NatsConnection> | undefined => {
    if (o.tenantCreds === undefined) return undefined;
    tenant ??= connectWithCreds(o.tenantCreds, { servers: o.servers, name: "fabric status page", reconnect: true }).catch((err: unknown) => {
      tenant = undefined;
      throw err;
    });
    return tenant;
  };

  const take = async (): Promise<StatusPageData> => {
    const problems: string[] = [];
    const status = await hubStatus(o.keystore, o.servers, o.tenantCreds);
    const at = Date.now();
    const counts = new Map<string, number>();
    for (const s of status.streams) counts.set(`stream:${s.account}/${s.name}`, s.messages);
    const windows: StatusPageWindow[] = [];
    let devices: StatusPageData["devices"] = { total: 0, online: 0, shown: [] };
    const conn = tenantConnection();
    if (conn !== undefined) {
      try {
        const nc = await conn;
        const jsm = await jetstreamManager(nc);
        for (const site of status.sites ?? []) counts.set(`site:${site.site}`, await siteMessages(jsm, site.site));
        for (const def of await listDefinitions(nc)) {
          const w = await windowStatus(nc, def);
          windows.push({ name: w.name, members: w.members, partitions: w.partitions.length, unowned: w.partitions.filter((p) => p.owner === "").length, behind: w.behind });
        }
        const all = await (await DeviceRegistry.open(nc)).list();
        const sorted = [...all].sort((a, b) => Number(b.state.online) - Number(a.state.online) || b.state.lastSeen - a.state.lastSeen);
        devices = {
          total: all.length,
          online: all.filter((d) => d.state.online).length,
          shown: sorted.slice(0, STATUS_PAGE_DEVICES).map((d) => ({ name: d.name, site: d.site ?? "", online: d.state.online, protocol: d.state.protocol ?? "", lastSeen: d.state.lastSeen, metadata: d.metadata })),
        };
      } catch (err) {
        problems.push(`tenant account: ${errorMessage(err)}`);
      }
    }
    if (o.tenantCreds !== undefined && status.sites === undefined) problems.push("edge sites and MQTT ingress: the tenant account did not answer");
    const sample: Sample = { at, counts };
    while (samples.length > 0 && (samples[0]?.at ?? at) < at - RATE_WINDOW_MS) samples.shift();
    const rate = (key: string): number | null => rateOf(samples, key, sample);
    samples.push(sample);
    let revocations: StatusPageRevocation[] = [];
    try {
      revocations = recentRevocations(o.keystore);
    } catch (err) {
      problems.push(`revocations: ${errorMessage(err)}`);
    }
    return {
      at,
      servers: status.servers,
      streams: status.streams.map((s) => ({
        account: s.account,
        name: s.name,
        messages: s.messages,
        bytes: s.bytes,
        rate: rate(`stream:${s.account}/${s.name}`),
        consumers: s.consumers.map((c) => ({ name: c.name, pending: c.pending, ackPending: c.ackPending })),
      })),
      clients: {
        byRole: status.clientsByRole,
        mqtt: status.ingress === undefined ? null : status.ingress.reduce((n, i) => n + i.connections, 0),
        grpc: o.grpcActivity?.() ?? null,
      },
      ingress: status.ingress ?? [],
      windows,
      sites: (status.sites ?? []).map((s) => {
        const r = s.report;
        const backlog: Record<string, number> = {};
        for (const [kind, st] of Object.entries(r?.streams ?? {})) if (st !== undefined) backlog[kind] = st.backlog;
        const sourceLag: Record<string, number> = {};
        for (const [kind, src] of Object.entries(s.sources)) if (src !== undefined) sourceLag[kind] = src.lag;
        return {
          site: s.site,
          ...(r === undefined ? {} : { link: r.link, linkSince: r.linkSince, reportedAt: r.at }),
          backlog,
          sourceLag,
          rate: rate(`site:${s.site}`),
        };
      }),
      devices,
      revocations,
      problems,
    };
  };

  return {
    snapshot: () => {
      const now = Date.now();
      if (last !== undefined && now - last.at < MIN_SAMPLE_INTERVAL_MS) return last.data;
      const data = take();
      last = { at: now, data };
      // a failed snapshot is not kept: the next request tries again
      data.catch((err: unknown) => {
        log.debug({ err: errorMessage(err) }, "status snapshot failed");
        if (last?.data === data) last = undefined;
      });
      return data;
    },
    close: async () => {
      const t = tenant;
      tenant = undefined;
      if (t !== undefined) await (await t.catch(() => undefined))?.drain().catch(() => undefined);
    },
  };
}
