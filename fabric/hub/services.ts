import { existsSync } from "node:fs";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { acquireLockFile, ConfigError, ensurePrivateDir, errorMessage, lockHolder, pollUntil, writeSecretFile, type Logger } from "../core/index.js";
import {
  connectWithCreds,
  issueUser,
  pushAccounts,
  startIdentityService,
  SYSTEM_ACCOUNT_NAME,
  watchAccounts,
  type AccountWatcher,
  type IdentityService,
  type Keystore,
  type PushReport,
} from "../../identity/index.js";
import { startGateway, type Gateway } from "../grpc/server.js";
import { ensureHubStreams, runDefinedWorkers, type EnsureResult } from "../../streams/index.js";
import { startIngress, type Ingress } from "../../ingress/index.js";
import { runDefinedSinks } from "../../sink/index.js";
import { hubCreds, tenantServerOptions } from "./hub-creds.js";
import { serveSites } from "./sites.js";
import { startDeviceRegistry, type DeviceRegistryRunner } from "../../devices/index.js";
import { startTokenExchangeHttp, type TokenExchangeHttp } from "./token-exchange-http.js";
import { startRegionLinks, type RegionLeafRemote, type RegionLinksRunner } from "./regions/index.js";
import { createStatusSource, startStatusPage, type StatusPage } from "./status-page/index.js";

/** How long the servers may take to have JetStream ready for every account. */
export const HUB_READY_TIMEOUT_MS = 60_000; // 60 s

/** Takes a data directory for one process (`fabric up`, `fabric serve`); returns the release. */
export async function lockDataDir(dataDir: string, command: string): Promise<() => void> {
  ensurePrivateDir(dataDir);
  const lockPath = join(dataDir, `${command.replace(/\s+/g, "-")}.lock`);
  try {
    return await acquireLockFile(lockPath, 0);
  } catch (err) {
    throw new ConfigError(`data directory ${dataDir} is in use by another ${command} (pid ${lockHolder(lockPath) ?? "?"})`, { cause: err });
  }
}

export interface HubServicesOptions {
  keystore: Keystore;
  /** The keystore was created by this start: a dev service credential is written too. */
  keystoreCreated: boolean;
  /** Where the services keep their own credentials (0600). */
  dataDir: string;
  /** The hub's servers (nats://…). */
  urls: string[];
  /** Replicas of the hub's streams. */
  replicas: number;
  /** Where the MQTT ingress and the gRPC gateway listen. */
  host: string;
  identityService: boolean;
  windows: boolean;
  /** Run the sinks defined in KV sink_defs (`fabric sinks add`). */
  sinks: boolean;
  mqtt?: { port: number; wsPort?: number | undefined; tls?: { port: number; cert: string; key: string } | undefined; ingress: Record<string, unknown> };
  grpc?: { port: number; tls?: { cert: string; key: string; ca?: string | undefined } | undefined };
  /** The read-only status page (its own host: loopback unless told; elsewhere it asks for a token). */
  statusPage?: { host: string; port: number; orAnyPort?: boolean | undefined };
  /** The HTTP token exchange (identity provider tokens for fabric credentials), on the services' host. */
  exchange?: { port: number; orAnyPort?: boolean | undefined };
  /** This hub is a region: its links to peer regions (`fabric region link`) are applied from the data directory. */
  region?: { name: string; applyRemotes?: ((remotes: RegionLeafRemote[]) => Promise<void>) | undefined };
}

type ServiceSettings = Pick<HubServicesOptions, "host" | "identityService" | "windows" | "sinks" | "mqtt" | "grpc" | "statusPage" | "exchange">;

/** The service settings out of `fabric up`'s or `fabric serve`'s parsed options. */
export function serviceSettings(o: {
  host: string;
  identityService: boolean;
  windows: boolean;
  sinks: boolean;
  mqtt?: HubServicesOptions["mqtt"] | undefined;
  grpc?: HubServicesOptions["grpc"] | undefined;
  statusPage?: HubServicesOptions["statusPage"] | undefined;
  exchange?: HubServicesOptions["exchange"] | undefined;
}): ServiceSettings {
  return {
    host: o.host,
    identityService: o.identityService,
    windows: o.windows,
    sinks: o.sinks,
    ...(o.mqtt === undefined ? {} : { mqtt: o.mqtt }),
    ...(o.grpc === undefined ? {} : { grpc: o.grpc }),
    ...(o.statusPage === undefined ? {} : { statusPage: o.statusPage }),
    ...(o.exchange === undefined ? {} : { exchange: o.exchange }),
  };
}

export interface RunningHubServices {
  urls: string[];
  /** The region's links, when the hub is a region. */
  regions: RegionLinksRunner | undefined;
  /** The device registry (of the first tenant account). */
  devices: DeviceRegistryRunner | undefined;
  /** The MQTT ingress's ports, when it runs. */
  mqtt: Ingress["ports"] | undefined;
  /** The gRPC gateway's port, when it runs. */
  grpc: number | undefined;
  /** The HTTP token exchange, when it runs. */
  exchange: { url: string; port: number } | undefined;
  /** The status page, when it runs: its URL and, off loopback, the file of the token it asks for. */
  statusPage: Pick<StatusPage, "url" | "port" | "tokenFile"> | undefined;
  /** A service credential for trying the fabric, created with the keystore. */
  devCreds: string | undefined;
  streams: EnsureResult;
  push: PushReport | undefined;
  stop(): Promise<void>;
}

/**
 * The hub's services on running servers (those `fabric up` starts, or a cluster of one's own: `fabric serve`):
 * pushes the account JWTs, creates the streams and KV buckets, and runs per tenant account the identity service,
 * the sites' registration, reports and source restarts, the window workers and the sinks; for the first tenant account the
 * MQTT ingress and the gRPC gateway when asked.
 */
export async function startHubServices(o: HubServicesOptions, log: Logger): Promise<RunningHubServices> {
  const ks = o.keystore;
  const connections: NatsConnection[] = [];
  const services: IdentityService[] = [];
  const ingresses: Ingress[] = [];
  const gateways: Gateway[] = [];
  const windowRunners: { stop(): Promise<void> }[] = [];
  const sinkRunners: { stop(): Promise<void> }[] = [];
  const pages: StatusPage[] = [];
  /** HTTP servers of the services (the token exchange). */
  const servers: (() => Promise<void>)[] = [];
  const stop = async (): Promise<void> => {
    for (const p of pages.splice(0)) await p.stop().catch(() => undefined);
    for (const s of servers.splice(0)) await s().catch(() => undefined);
    for (const g of gateways.splice(0)) await g.stop().catch(() => undefined);
    for (const w of windowRunners.splice(0)) await w.stop().catch(() => undefined);
    for (const s of sinkRunners.splice(0)) await s.stop().catch(() => undefined);
    for (const i of ingresses.splice(0)) await i.stop().catch(() => undefined);
    for (const s of services.splice(0)) await s.stop().catch(() => undefined);
    for (const c of connections.splice(0)) await c.drain().catch(() => undefined);
  };
  try {
    const urls = o.urls;
    // --- identity: where to push, then push whatever is newer than what the servers hold ---
    await ks.withLock(() => ks.writeStoreFile({ ...ks.storeFile(), hubUrls: urls }));
    let push: PushReport | undefined;
    try {
      push = await pushAccounts(ks, { servers: urls, logger: log });
    } catch (err) {
      log.warn({ err: errorMessage(err) }, "could not push account JWTs (the servers were started with them preloaded)");
    }

    // --- one watcher of account updates (the sites are told of each) ---
    let watcher: AccountWatcher | undefined;
    let sysNc: NatsConnection | undefined;
    const accountWatcher = async (): Promise<AccountWatcher> => {
      if (watcher !== undefined) return watcher;
      sysNc = await connectWithCreds(await hubCreds(ks, o.dataDir, SYSTEM_ACCOUNT_NAME, log, "watcher"), { servers: urls, name: "fabric hub watcher", reconnect: true });
      connections.push(sysNc);
      watcher = watchAccounts({ connection: sysNc, operatorKeys: [ks.storeFile().operator.publicKey], logger: log });
      const w = watcher;
      services.push({ stop: () => w.stop() });
      return w;
    };

    // --- streams, KV, identity service per tenant account ---
    let streams: EnsureResult = { created: [], updated: [], unchanged: [] };
    let regionRunner: RegionLinksRunner | undefined;
    let firstTenantNc: NatsConnection | undefined;
    let devices: DeviceRegistryRunner | undefined;
    for (const acc of ks.tenantAccounts()) {
      const creds = await hubCreds(ks, o.dataDir, acc.name, log);
      const nc = await connectWithCreds(creds, { servers: urls, name: `fabric hub (${acc.name})`, reconnect: true });
      connections.push(nc);
      firstTenantNc ??= nc;
      // right after start (a cluster above all) an account's JetStream may not be enabled everywhere yet: retry
      const r = await pollUntil(async () => ensureHubStreams(nc, await jetstreamManager(nc), o.replicas), {
        timeoutMs: HUB_READY_TIMEOUT_MS,
        intervalMs: 250,
        what: `streams of account ${acc.name}`,
      });
      streams = { created: [...streams.created, ...r.created], updated: [...streams.updated, ...r.updated], unchanged: [...streams.unchanged, ...r.unchanged] };
      // a device provisioned or renewed is in the registry at once (not only at its next sync)
      if (o.identityService) services.push(startIdentityService({ keystore: ks, connection: nc, account: acc.name, logger: log, onIssued: () => void devices?.syncIssued().catch(() => undefined) }));
      const sites = await serveSites(nc, log, { watcher: await accountWatcher(), accountKey: acc.publicKey });
      services.push({ stop: () => Promise.resolve(sites.stop()) });
      if (o.region !== undefined && acc.name === ks.storeFile().region?.account) {
        const regions = await startRegionLinks({ ks, region: o.region.name, dataDir: o.dataDir, urls, nc, watcher: await accountWatcher(), replicas: o.replicas, applyRemotes: o.region.applyRemotes, logger: log });
        services.push({ stop: () => regions.stop() });
        regionRunner = regions;
      }
      if (acc.name === ks.tenantAccounts()[0]?.name && sysNc !== undefined) {
        const d = await startDeviceRegistry({ nc, sysNc, ks, account: acc.name, logger: log });
        services.push({ stop: () => d.stop() });
        devices = d;
      }
      if (o.windows) windowRunners.push(await runDefinedWorkers(nc, log));
      if (o.sinks) sinkRunners.push(await runDefinedSinks(nc, log));
    }
    const tenant = ks.tenantAccounts()[0];
    let mqtt: Ingress["ports"] | undefined;
    if (o.mqtt !== undefined && tenant !== undefined) {
      const m = o.mqtt;
      const ingress = await startIngress({
        config: {
          ...m.ingress,
          tcp: { host: o.host, port: m.port },
          ...(m.wsPort === undefined ? {} : { ws: { host: o.host, port: m.wsPort } }),
          ...(m.tls === undefined ? {} : { tls: { host: o.host, port: m.tls.port, cert: m.tls.cert, key: m.tls.key } }),
        },
        ...(await tenantServerOptions(ks, o.dataDir, tenant.name, urls, log, "ingress")),
        logger: log,
      });
      ingresses.push(ingress);
      mqtt = ingress.ports;
    }
    let grpc: number | undefined;
    if (o.grpc !== undefined && tenant !== undefined) {
      const gateway = await startGateway({
        host: o.host,
        port: o.grpc.port,
        ...(o.grpc.tls === undefined ? {} : { tls: o.grpc.tls }),
        ...(await tenantServerOptions(ks, o.dataDir, tenant.name, urls, log, "hub")),
        logger: log,
      });
      gateways.push(gateway);
      grpc = gateway.port;
    }
    let exchange: TokenExchangeHttp | undefined;
    if (o.exchange !== undefined && o.identityService && firstTenantNc !== undefined) {
      exchange = await startTokenExchangeHttp({ nc: firstTenantNc, host: o.host, port: o.exchange.port, orAnyPort: o.exchange.orAnyPort ?? false, logger: log });
      const e = exchange;
      servers.push(() => e.stop());
    }
    let statusPage: StatusPage | undefined;
    if (o.statusPage !== undefined) {
      const gateway = gateways[0];
      const source = createStatusSource({
        keystore: ks,
        servers: urls,
        ...(tenant === undefined ? {} : { tenantCreds: await hubCreds(ks, o.dataDir, tenant.name, log) }),
        ...(gateway === undefined ? {} : { grpcActivity: () => gateway.activity() }),
        logger: log,
      });
      statusPage = await startStatusPage({ host: o.statusPage.host, port: o.statusPage.port, orAnyPort: o.statusPage.orAnyPort ?? false, dataDir: o.dataDir, source, logger: log });
      pages.push(statusPage);
    }
    let devCreds: string | undefined;
    if (tenant !== undefined) {
      const devPath = join(o.dataDir, "creds", `${tenant.name}-dev-service.creds`);
      if (o.keystoreCreated) {
        const dev = await ks.withLock(() => issueUser(ks, { account: tenant.name, role: "service", name: "dev" }));
        if (dev.creds !== undefined) writeSecretFile(devPath, dev.creds);
      }
      if (existsSync(devPath)) devCreds = devPath;
    }
    return { urls, regions: regionRunner, devices, exchange: exchange === undefined ? undefined : { url: exchange.url, port: exchange.port }, mqtt, grpc, statusPage: statusPage === undefined ? undefined : { url: statusPage.url, port: statusPage.port, tokenFile: statusPage.tokenFile }, devCreds, streams, push, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
