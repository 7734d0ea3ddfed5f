import type { HubStatus, RegionLinkStatus, SiteInfo } from "../hub/index.js";
import type { ServerPorts } from "../core/index.js";

export interface ReadySummary {
  urls: string[];
  mqtt: { tcp: number; tls: number; ws: number } | undefined;
  grpc: number | undefined;
  statusPage: { url: string; tokenFile: string | undefined } | undefined;
  /** The HTTP token exchange (identity provider tokens in, fabric credentials out). */
  exchange: { url: string } | undefined;
  /** Where Prometheus scrapes this process (undefined with --no-metrics). */
  metrics: { port: number; url: string } | undefined;
  nodes: { name: string; url: string; ports: ServerPorts; log: string }[];
  keystore: string;
  keystoreCreated: boolean;
  devCreds: string | undefined;
  streams: { created: string[]; updated: string[]; unchanged: string[] };
}

/** What `fabric up` prints once the hub is ready (stderr: it is progress, not data). */
export function renderReady(s: ReadySummary): string {
  const lines = ["", "fabric hub is up"];
  for (const n of s.nodes) {
    lines.push(`  ${n.name}: ${n.url}  monitoring http://127.0.0.1:${n.ports.monitoring}  leaf nodes :${n.ports.leafnode}${n.ports.cluster > 0 ? `  routes :${n.ports.cluster}` : ""}`);
    lines.push(`    log ${n.log}`);
  }
  if (s.grpc !== undefined) lines.push(`  gRPC API: 127.0.0.1:${s.grpc} (fabric.v1, reflection on; see the README for buf curl)`);
  if (s.mqtt !== undefined) {
    lines.push(`  MQTT ingress: mqtt://127.0.0.1:${s.mqtt.tcp}${s.mqtt.ws > 0 ? `  ws://127.0.0.1:${s.mqtt.ws}/mqtt` : ""}${s.mqtt.tls > 0 ? `  mqtts://127.0.0.1:${s.mqtt.tls}` : ""}`);
  }
  if (s.metrics !== undefined) lines.push(`  metrics (Prometheus): ${s.metrics.url}`);
  if (s.exchange !== undefined) lines.push(`  token exchange (OAuth2/OIDC tokens in, fabric credentials out): ${s.exchange.url}/token (fabric-id idp add)`);
  if (s.statusPage !== undefined) {
    lines.push(`  status page: ${s.statusPage.url}${s.statusPage.tokenFile === undefined ? "" : ` (it asks for the token in ${s.statusPage.tokenFile}: HTTP Basic password, or Authorization: Bearer)`}`);
  }
  lines.push(`  keystore ${s.keystore}${s.keystoreCreated ? " (created now: a dev operator with account 'fleet')" : ""}`);
  if (s.devCreds !== undefined) lines.push(`  a service credential to try it: ${s.devCreds}`);
  lines.push(`  streams: ${[...s.streams.created, ...s.streams.updated, ...s.streams.unchanged].join(", ")}`);
  lines.push("", "next:");
  lines.push("  fabric status                                   servers, streams, clients");
  lines.push("  fabric-id issue device sensor-1 --site plant-a  a device credential (device-sensor-1.creds)");
  lines.push("  fabric-id revoke device sensor-1                disconnects it everywhere");
  if (s.mqtt !== undefined) {
    lines.push("  fabric-id issue mqtt meter-1 --site plant-a     a legacy MQTT device (its JWT is its password):");
    lines.push(`    mosquitto_pub -p ${s.mqtt.tcp} -u meter-1 -P "$(fabric-id describe mqtt meter-1 --raw)" -q 1 \\`);
    lines.push(`      -t telemetry/plant-a/meter-1/temp -m '{"value":21.5,"ts":'$(date +%s000)'}'`);
  }
  lines.push(`  nats --creds ${s.devCreds ?? "<service.creds>"} -s ${s.urls[0] ?? ""} stream ls`);
  lines.push("", "Ctrl-C stops the hub; `fabric up` again resumes with all data.");
  return lines.join("\n");
}

const mb = (n: number): string => `${(n / 1_048_576).toFixed(1)} MiB`;

/** Text for `fabric status`. */
export function renderHubStatus(s: HubStatus): string {
  const lines = ["servers:"];
  for (const v of s.servers) {
    lines.push(
      `  ${v.name.padEnd(10)} ${v.healthy ? "healthy" : `UNHEALTHY ${v.healthError ?? ""}`}  v${v.version}  ${v.connections} conn  mem ${mb(v.memBytes)}` +
        (v.jetstream === undefined ? "" : `  js ${mb(v.jetstream.storageBytes)} file / ${mb(v.jetstream.memoryBytes)} mem, ${v.jetstream.streams} streams`),
    );
  }
  lines.push("streams:");
  for (const st of s.streams) {
    lines.push(`  ${st.account}/${st.name.padEnd(24)} ${String(st.messages).padStart(10)} msgs  ${mb(st.bytes)}`);
    for (const c of st.consumers) lines.push(`    consumer ${c.name}: lag ${c.pending}, ack pending ${c.ackPending}, redelivered ${c.redelivered}`);
    for (const g of st.consumerGroups) lines.push(`    ${g.count} × ${g.purpose}: lag ${g.pending}, ack pending ${g.ackPending}`);
  }
  if (s.ingress !== undefined) {
    lines.push("MQTT ingress:");
    if (s.ingress.length === 0) lines.push("  (no instance running)");
    for (const i of s.ingress) lines.push(`  ${i.instance}  pid ${i.pid}  ${i.connections} connection(s)  up since ${new Date(i.startedAt).toISOString()}`);
  }
  if (s.sites !== undefined) lines.push(...renderSites(s.sites));
  if (s.regions !== undefined) lines.push("region links:", ...renderRegionLinks(s.regions).map((l) => `  ${l}`));
  lines.push("clients by role:");
  const roles = Object.entries(s.clientsByRole).sort();
  if (roles.length === 0) lines.push("  (none)");
  for (const [role, n] of roles) lines.push(`  ${role.padEnd(10)} ${n}`);
  return lines.join("\n");
}

const ago = (ms: number): string => (ms < 0 ? "never" : ms < 1_000 ? `${ms} ms ago` : `${Math.round(ms / 1_000)} s ago`);

/** Edge sites: each one's link, backlog per stream (messages and age not yet at the hub), drops, and the hub's sources. */
export function renderSites(sites: readonly SiteInfo[], now = Date.now()): string[] {
  const lines = ["edge sites:"];
  if (sites.length === 0) lines.push("  (none)");
  for (const site of sites) {
    const r = site.report;
    lines.push(
      `  ${site.site.padEnd(12)} ` +
        (r === undefined ? "no report yet" : `link ${r.link} since ${new Date(r.linkSince).toISOString()}, reported ${ago(now - r.at)}, trust synced ${r.trustSyncedAt === 0 ? "not yet" : ago(now - r.trustSyncedAt)}`),
    );
    for (const kind of ["events", "telemetry", "aggregates"] as const) {
      if (kind === "aggregates" && site.sources.aggregates === undefined && r?.streams.aggregates === undefined) continue;
      const src = site.sources[kind];
      const st = r?.streams[kind];
      lines.push(
        `    ${kind.padEnd(9)} ` +
          (st === undefined ? "" : `backlog ${st.backlog} msgs (oldest ${Math.round(st.oldestBacklogMs / 1_000)} s), buffer ${mb(st.bytes)} of ${mb(st.maxBytes)} ${st.overflow}${st.full ? " FULL" : ""}, dropped ${st.dropped}; `) +
          (src === undefined ? "not sourced" : `hub source lag ${src.lag}, active ${ago(src.activeMs)}`),
      );
    }
  }
  return lines;
}

/** Region links: each peer's state, its copies here and this region's backlog for it. */
export function renderRegionLinks(links: readonly RegionLinkStatus[]): string[] {
  if (links.length === 0) return ["no region links"];
  const lines: string[] = [];
  for (const l of links) {
    lines.push(`region ${l.peer}: ${l.up ? "up" : "DOWN"}${l.dials === undefined ? "" : l.dials ? " (this region dials it)" : " (it dials this region)"}${l.error === undefined ? "" : ` error: ${l.error}`}`);
    for (const s of l.streams) {
      lines.push(`  ${s.kind}: copy ${s.copy} ${s.messages} msgs, lag ${s.lag}, last heard ${s.activeMs < 0 ? "never" : `${(s.activeMs / 1000).toFixed(1)} s ago`}; backlog for ${l.peer}: ${s.backlog}`);
    }
  }
  return lines;
}
