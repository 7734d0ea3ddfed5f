import { existsSync, readFileSync } from "node:fs";
import { ConfigError, checkNatsServerConfig, parseInput, writeFileAtomic } from "../fabric/core/index.js";
import { siteSpecSchema, type SiteSpec, type SiteSpecInput } from "./site-spec.js";

/** How often the site's resolver would sync with others (it has no peers: the edge agent pushes instead). */
const EDGE_RESOLVER_INTERVAL = "2m";

/** The validated site spec, or an InvalidInputError naming every bad field (`site spec.hub.urls.0: …`). */
export function parseSiteSpec(input: SiteSpecInput): Readonly<SiteSpec> {
  return Object.freeze(parseInput(siteSpecSchema, input, "site spec"));
}

/**
 * The edge nats-server's config for a site: operator mode with a full resolver preloaded with the account JWTs
 * (devices authenticate while the WAN is down), JetStream in the site's own domain, a leaf remote to the hub
 * bound to the tenant account with the site's leaf credential (and TLS), pings that notice a silent cut within
 * seconds, and the device listener. nats-server reads JSON, so the config is JSON.
 */
export function edgeServerConfig(input: SiteSpecInput): Record<string, unknown> {
  const s = parseSiteSpec(input);
  const tls = s.hub.tls;
  return {
    server_name: s.serverName ?? `edge-${s.site}`,
    host: s.listen.host,
    port: s.listen.port,
    http_port: s.listen.monitorPort,
    ...(s.portsDir === undefined ? {} : { ports_file_dir: s.portsDir }),
    ping_interval: `${s.pingIntervalSec}s`,
    ping_max: s.pingMax,
    operator: s.trust.operatorJwt,
    system_account: s.trust.systemAccount,
    resolver: { type: "full", dir: s.resolverDir, allow_delete: false, interval: EDGE_RESOLVER_INTERVAL, timeout: "1.9s" },
    resolver_preload: s.trust.accounts,
    jetstream: { store_dir: s.storeDir, domain: s.site, max_file_store: s.maxFileStoreBytes, max_memory_store: s.maxMemoryStoreBytes },
    leafnodes: {
      reconnect: `${s.reconnectMs}ms`,
      remotes: [
        {
          urls: s.hub.urls,
          credentials: s.hub.creds,
          account: s.trust.account,
          ...(tls === undefined ? {} : { tls: { ...(tls.ca === undefined ? {} : { ca_file: tls.ca }), ...(tls.cert === undefined ? {} : { cert_file: tls.cert, key_file: tls.key }) } }),
        },
      ],
    },
  };
}

/** Checks the files a site spec references: the leaf credential (present, a NATS user credential) and TLS files. */
export function checkSiteFiles(input: SiteSpecInput): void {
  const s = parseSiteSpec(input);
  const need = (file: string, field: string): string => {
    if (!existsSync(file)) throw new ConfigError(`site spec.${field}: ${file} does not exist`, { fields: { [field]: file } });
    try {
      return readFileSync(file, "utf8");
    } catch (err) {
      throw new ConfigError(`site spec.${field}: ${file} cannot be read`, { cause: err, fields: { [field]: file } });
    }
  };
  if (!need(s.hub.creds, "hub.creds").includes("-----BEGIN NATS USER JWT-----")) {
    throw new ConfigError(`site spec.hub.creds: ${s.hub.creds} is not a NATS credentials file`, { fields: { "hub.creds": s.hub.creds } });
  }
  const tls = s.hub.tls;
  if (tls?.ca !== undefined) need(tls.ca, "hub.tls.ca");
  if (tls?.cert !== undefined) need(tls.cert, "hub.tls.cert");
  if (tls?.key !== undefined) need(tls.key, "hub.tls.key");
}

/**
 * Generates the site's config, checks the files it references, writes it (0600: the server's) and has
 * `nats-server -t` check it. Returns the config written.
 */
export function writeEdgeServerConfig(path: string, input: SiteSpecInput): Record<string, unknown> {
  const config = edgeServerConfig(input);
  checkSiteFiles(input);
  writeFileAtomic(path, `${JSON.stringify(config, null, 2)}\n`, 0o600);
  checkNatsServerConfig(path);
  return config;
}
