import { z } from "zod";
import { errorMessage } from "../core/index.js";
import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { adminConnection, connectWithCreds, pingServers, type Keystore } from "../../identity/index.js";
import { kvKeys, MQTT_INSTANCES_BUCKET } from "../../streams/index.js";
import { consumerDetailSchema, groupConsumers, type ConsumerGroup } from "./consumer-purpose.js";
import { listSites, type SiteInfo } from "./sites.js";
import { discoverRegionLinks, regionLinksStatus, type RegionLinkStatus } from "./regions/index.js";

export const STATUS_TIMEOUT_MS = 3_000; // 3 s
const CONNZ_LIMIT = 100_000;

export interface ServerStatus {
  name: string;
  healthy: boolean;
  healthError?: string;
  version: string;
  connections: number;
  memBytes: number;
  jetstream: { memoryBytes: number; storageBytes: number; streams: number; consumers: number; messages: number } | undefined;
}

export interface StreamStatus {
  account: string;
  name: string;
  messages: number;
  bytes: number;
  /** Durable consumers, by name. */
  consumers: { name: string; pending: number; ackPending: number; redelivered: number }[];
  /** The other consumers (KV watches, ordered and ephemeral readers, MQTT sessions) counted per purpose. */
  consumerGroups: ConsumerGroup[];
}

export interface IngressInstanceStatus {
  instance: string;
  pid: number;
  connections: number;
  startedAt: number;
}

export interface HubStatus {
  servers: ServerStatus[];
  /** Live MQTT ingress instances (from their heartbeats), when a tenant credential was given. */
  ingress?: IngressInstanceStatus[];
  /** The edge sites the hub sources, with their latest reports, when a tenant credential was given. */
  sites?: SiteInfo[];
  /** The hub's links to other regions (found from its copy streams), when a tenant credential was given. */
  regions?: RegionLinkStatus[];
  streams: StreamStatus[];
  /** Client connections by role (the `role:` tag of their JWT), over all servers. */
  clientsByRole: Record<string, number>;
}

const serverSchema = z.looseObject({ name: z.string(), id: z.string().optional(), ver: z.string().optional(), version: z.string().optional() });

const healthzSchema = z.looseObject({ server: serverSchema, data: z.looseObject({ status: z.string().optional(), error: z.string().optional() }).optional() });
const statzSchema = z.looseObject({
  server: serverSchema,
  statsz: z.looseObject({ connections: z.number().default(0), mem: z.number().default(0) }).optional(),
  data: z.looseObject({ connections: z.number().default(0), mem: z.number().default(0) }).optional(),
});
const streamSchema = z.looseObject({
  name: z.string(),
  state: z.looseObject({ messages: z.number().default(0), bytes: z.number().default(0) }),
  cluster: z.looseObject({ leader: z.string().optional() }).optional(),
  consumer_detail: z.array(consumerDetailSchema).optional(),
});
const jszSchema = z.looseObject({
  server: serverSchema,
  data: z
    .looseObject({
      memory: z.number().default(0),
      storage: z.number().default(0),
      streams: z.number().default(0),
      consumers: z.number().default(0),
      messages: z.number().default(0),
      account_details: z.array(z.looseObject({ name: z.string(), stream_detail: z.array(streamSchema).optional() })).optional(),
    })
    .optional(),
});
const connzSchema = z.looseObject({
  server: serverSchema,
  data: z.looseObject({ connections: z.array(z.looseObject({ tags: z.array(z.string()).optional(), account: z.string().optional() })).optional() }).optional(),
});

const heartbeatSchema = z.looseObject({ pid: z.number().default(0), connections: z.number().default(0), startedAt: z.number().default(0) });

/** What the tenant account shows: the MQTT ingress instances alive now (their heartbeats in KV) and the edge sites. */
async function tenantView(servers: string[], creds: string): Promise<{ ingress: IngressInstanceStatus[]; sites: SiteInfo[]; regions: RegionLinkStatus[] }> {
  const nc = await connectWithCreds(creds, { servers, name: "fabric status", timeoutMs: STATUS_TIMEOUT_MS });
  try {
    const kv = await new Kvm(nc).open(MQTT_INSTANCES_BUCKET);
    const out: IngressInstanceStatus[] = [];
    // the keys from the stream's subject counts: kv.keys() would leave an ordered consumer behind for 5 minutes
    for (const k of await kvKeys(await jetstreamManager(nc), MQTT_INSTANCES_BUCKET, ">")) {
      const e = await kv.get(k);
      if (e === null || e.operation !== "PUT") continue;
      const hb = heartbeatSchema.safeParse(e.json());
      if (hb.success) out.push({ instance: k, pid: hb.data.pid, connections: hb.data.connections, startedAt: hb.data.startedAt });
    }
    const jsm = await jetstreamManager(nc);
    return { ingress: out.sort((a, b) => a.instance.localeCompare(b.instance)), sites: await listSites(nc), regions: await regionLinksStatus(jsm, await discoverRegionLinks(jsm)) };
  } finally {
    await nc.close();
  }
}

/**
 * `fabric status`: asks every server of the hub over the system account (a two-minute admin user):
 * health, JetStream usage, streams with message counts, consumers with lag, clients by role.
 */
export async function hubStatus(ks: Keystore, servers: string[], tenantCreds?: string): Promise<HubStatus> {
  const tenant = tenantCreds === undefined ? undefined : await tenantView(servers, tenantCreds).catch(() => undefined);
  const nc = await adminConnection(ks, servers);
  try {
    const count = Math.max(1, (await pingServers(nc, STATUS_TIMEOUT_MS)).length);
    const ask = async (what: string, body: unknown): Promise<unknown[]> => {
      const out: unknown[] = [];
      const it = await nc.requestMany(`$SYS.REQ.SERVER.PING.${what}`, JSON.stringify(body), { strategy: "count", maxMessages: count, maxWait: STATUS_TIMEOUT_MS });
      for await (const m of it) {
        try {
          out.push(m.json());
        } catch {
          // a reply that is not JSON is skipped
        }
      }
      return out;
    };
    const names = new Map(ks.accounts().map((a) => [a.publicKey, a.name]));
    const health = new Map<string, { ok: boolean; error?: string }>();
    for (const r of await ask("HEALTHZ", {})) {
      const h = healthzSchema.safeParse(r);
      if (h.success) health.set(h.data.server.name, { ok: h.data.data?.status === "ok", ...(h.data.data?.error === undefined ? {} : { error: h.data.data.error }) });
    }
    const statz = new Map<string, z.infer<typeof statzSchema>>();
    for (const r of await ask("STATSZ", {})) {
      const s = statzSchema.safeParse(r);
      if (s.success) statz.set(s.data.server.name, s.data);
    }
    const jsz = (await ask("JSZ", { accounts: true, streams: true, consumer: true, config: true })).flatMap((r) => {
      const j = jszSchema.safeParse(r);
      return j.success ? [j.data] : [];
    });
    const serverNames = [...new Set([...health.keys(), ...statz.keys(), ...jsz.map((j) => j.server.name)])].sort();
    const serversOut: ServerStatus[] = serverNames.map((name) => {
      const j = jsz.find((x) => x.server.name === name)?.data;
      const s = statz.get(name);
      const h = health.get(name);
      return {
        name,
        healthy: h?.ok ?? false,
        ...(h?.error === undefined ? {} : { healthError: h.error }),
        version: s?.server.ver ?? s?.server.version ?? "",
        connections: (s?.statsz ?? s?.data)?.connections ?? 0,
        memBytes: (s?.statsz ?? s?.data)?.mem ?? 0,
        jetstream: j === undefined ? undefined : { memoryBytes: j.memory, storageBytes: j.storage, streams: j.streams, consumers: j.consumers, messages: j.messages },
      };
    });
    // In a cluster every replica reports a stream: keep the leader's view (or the first).
    const streams = new Map<string, StreamStatus & { leader: boolean }>();
    for (const j of jsz) {
      for (const acc of j.data?.account_details ?? []) {
        for (const st of acc.stream_detail ?? []) {
          const key = `${acc.name}/${st.name}`;
          const leader = st.cluster?.leader === undefined || st.cluster.leader === j.server.name;
          if (streams.has(key) && !leader) continue;
          const { named, groups } = groupConsumers(st.name, st.consumer_detail ?? []);
          streams.set(key, {
            account: names.get(acc.name) ?? acc.name,
            name: st.name,
            messages: st.state.messages,
            bytes: st.state.bytes,
            consumers: named,
            consumerGroups: groups,
            leader,
          });
        }
      }
    }
    const clientsByRole: Record<string, number> = {};
    for (const r of await ask("CONNZ", { auth: true, limit: CONNZ_LIMIT })) {
      const c = connzSchema.safeParse(r);
      if (!c.success) continue;
      for (const conn of c.data.data?.connections ?? []) {
        const role = conn.tags?.find((t) => t.startsWith("role:"))?.slice(5) ?? (conn.account === ks.storeFile().systemAccount ? "system" : "other");
        clientsByRole[role] = (clientsByRole[role] ?? 0) + 1;
      }
    }
    return {
      ...(tenant === undefined ? {} : { ingress: tenant.ingress, sites: tenant.sites, ...(tenant.regions.length === 0 ? {} : { regions: tenant.regions }) }),
      servers: serversOut,
      streams: [...streams.values()].map(({ leader: _l, ...s }) => s).sort((a, b) => a.account.localeCompare(b.account) || a.name.localeCompare(b.name)),
      clientsByRole,
    };
  } catch (err) {
    throw new Error(`status query failed: ${errorMessage(err)}`, { cause: err });
  } finally {
    await nc.close();
  }
}
