import { existsSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import {
  ConfigError,
  ensurePrivateDir,
  errorMessage,
  parseInput,
  monitorNatsServers,
  pickFreePorts,
  readJsonFile,
  SERVER_PID_FILE,
  stopLeftoverServer,
  superviseNatsServer,
  waitHealthy,
  writeFileAtomic,
  type Logger,
  type ServerPorts,
  type Supervisor,
} from "../core/index.js";
import { isDeepStrictEqual } from "node:util";
import { initKeystore, Keystore, setKeystoreRegion, upgradeKeystore } from "../../identity/index.js";
import type { RegionLeafRemote } from "./regions/index.js";
import { DEFAULT_CLUSTER_NAME, hubServerConfig, leafTlsSchema, writeServerConfig } from "./config.js";
import { HUB_READY_TIMEOUT_MS, lockDataDir, serviceSettings, startHubServices, type RunningHubServices } from "./services.js";

export const DEFAULT_CLIENT_PORT = 4222;
export const DEFAULT_MONITOR_PORT = 8222;
export const DEFAULT_LEAF_PORT = 7422;
export const DEFAULT_CLUSTER_PORT = 6222;
export const DEFAULT_HOST = "0.0.0.0";

const portSchema = z.number().int().min(0).max(65_535);
export const hubOptionsSchema = z.strictObject({
  dataDir: z.string().min(1),
  keystoreDir: z.string().min(1),
  nodes: z.number().int().min(1).max(7).refine((n) => n === 1 || n % 2 === 1, "a JetStream cluster needs an odd number of nodes (1, 3, 5 or 7)"),
  host: z.string().min(1),
  port: portSchema,
  monitorPort: portSchema,
  leafPort: portSchema,
  leafTls: leafTlsSchema.optional(),
  clusterPort: portSchema,
  identityService: z.boolean().default(true),
  /** Run a worker for every window definition (KV window_defs) of each tenant account. */
  windows: z.boolean().default(true),
  /** Run every sink definition (KV sink_defs) of each tenant account. */
  sinks: z.boolean().default(true),
  /** The MQTT ingress (for the first tenant account): plain, WebSocket and (with a certificate) TLS ports. */
  mqtt: z
    .strictObject({
      port: portSchema,
      wsPort: portSchema.optional(),
      tls: z.strictObject({ port: portSchema, cert: z.string().min(1), key: z.string().min(1) }).optional(),
      ingress: z.record(z.string(), z.unknown()).default({}),
    })
    .optional(),
  /** The gRPC gateway (for the first tenant account); TLS with a certificate, mTLS with a CA as well. */
  grpc: z
    .strictObject({
      port: portSchema,
      tls: z.strictObject({ cert: z.string().min(1), key: z.string().min(1), ca: z.string().min(1).optional() }).optional(),
    })
    .optional(),
  /** The read-only status page: open on loopback, elsewhere it asks for the token in `<dataDir>/status-page.token`. */
  statusPage: z.strictObject({ host: z.string().min(1), port: portSchema, orAnyPort: z.boolean().default(false) }).optional(),
  /** The HTTP token exchange (identity provider tokens for fabric credentials) on the services' host. */
  exchange: z.strictObject({ port: portSchema, orAnyPort: z.boolean().default(false) }).optional(),
  /** This hub is region `region` (its JetStream domain), linked to others with `fabric region link`. */
  region: z.string().optional(),
});
export type HubOptions = z.input<typeof hubOptionsSchema>;

export interface HubNode {
  name: string;
  url: string;
  ports: ServerPorts;
  logFile: string;
}

export interface RunningHub extends RunningHubServices {
  nodes: HubNode[];
  keystore: Keystore;
  /** True when this start created the keystore (a dev operator and accounts). */
  keystoreCreated: boolean;
  /** The pids of the running nats-server processes (they change when the supervisor restarts one). */
  serverPids(): number[];
}

/** `<data>/hub.json`: whose data directory this is (operator), how many nodes, which region. */
export const hubStateSchema = z.strictObject({ operator: z.string(), nodes: z.number().int(), region: z.string().optional() });

function nodePort(base: number, i: number): number {
  return base === 0 ? -1 : base + i;
}

/**
 * `fabric up`: the hub. Creates the data directory (and, on first run, a dev keystore), generates and checks
 * each node's config, starts and supervises nats-server, pushes the account JWTs, bootstraps streams and KV,
 * and runs the identity service. A second start on the same data directory resumes with all data.
 */
export async function startHub(input: HubOptions, logger: Logger): Promise<RunningHub> {
  const o = parseInput(hubOptionsSchema, input, "hub options");
  const log = logger.child({ component: "hub" });
  const release = await lockDataDir(o.dataDir, "fabric up");
  const supervisors: Supervisor[] = [];
  let servicesStop: (() => Promise<void>) | undefined;
  let unmonitor: (() => void) | undefined;
  const stop = async (): Promise<void> => {
    unmonitor?.();
    await servicesStop?.();
    servicesStop = undefined;
    for (const s of supervisors.splice(0).reverse()) await s.stop();
    release();
  };
  try {
    // --- keystore ---
    let keystoreCreated = false;
    let ks: Keystore;
    if (Keystore.exists(o.keystoreDir)) {
      ks = Keystore.open(o.keystoreDir);
      const upgraded = await ks.withLock(() => upgradeKeystore(ks));
      if (upgraded.length > 0) log.info({ accounts: upgraded }, "keystore upgraded with new built-in roles");
    } else {
      ks = initKeystore(o.keystoreDir).keystore;
      keystoreCreated = true;
      log.info({ keystore: o.keystoreDir }, "created a dev keystore (operator, system account, account fleet)");
    }
    const store = ks.storeFile();
    const statePath = join(o.dataDir, "hub.json");
    if (existsSync(statePath)) {
      const state = hubStateSchema.safeParse(readJsonFile(statePath));
      if (!state.success) throw new ConfigError(`${statePath} is damaged: remove it only if this data directory is new`);
      if (state.data.operator !== store.operator.publicKey) {
        throw new ConfigError(
          `data directory ${o.dataDir} belongs to operator ${state.data.operator}, but the keystore ${o.keystoreDir} holds operator ${store.operator.publicKey}: use the keystore it was created with (FABRIC_HOME / --store) or another --data`,
        );
      }
      if (state.data.nodes !== o.nodes) throw new ConfigError(`data directory ${o.dataDir} holds a ${state.data.nodes}-node hub; start it with --nodes ${state.data.nodes} or use another --data`);
      if (state.data.region !== o.region) {
        throw new ConfigError(`data directory ${o.dataDir} holds ${state.data.region === undefined ? "a hub that is no region" : `region ${state.data.region}`}: start it ${state.data.region === undefined ? "without --region" : `with --region ${state.data.region}`} or use another --data`);
      }
    }
    if (o.region !== undefined) {
      const region = o.region;
      const tenant = ks.tenantAccounts()[0];
      if (tenant === undefined) throw new ConfigError(`keystore ${o.keystoreDir} has no tenant account to link regions with`);
      await ks.withLock(() => setKeystoreRegion(ks, region, tenant.name));
    }
    writeFileAtomic(statePath, `${JSON.stringify({ operator: store.operator.publicKey, nodes: o.nodes, ...(o.region === undefined ? {} : { region: o.region }) }, null, 2)}\n`, 0o600);

    // --- nodes ---
    const names = Array.from({ length: o.nodes }, (_, i) => (o.nodes === 1 ? "hub" : `hub-${i + 1}`));
    const known: { client: number; monitor: number; leaf: number; cluster: number }[] = names.map((_, i) => ({
      client: nodePort(o.port, i),
      monitor: nodePort(o.monitorPort, i),
      leaf: nodePort(o.leafPort, i),
      cluster: nodePort(o.clusterPort, i),
    }));
    const routeHost = o.host === "0.0.0.0" || o.host === "::" ? "127.0.0.1" : o.host;
    if (o.nodes > 1 && o.clusterPort === 0) {
      // A JetStream cluster node refuses to start without routes, so route ports are known up front.
      const picked = await pickFreePorts(o.nodes, routeHost);
      known.forEach((k, i) => (k.cluster = picked[i] ?? -1));
    }
    const nodeDir = (i: number): string => join(o.dataDir, names[i] ?? `hub-${i + 1}`);
    // leaf remotes to the peer regions this region dials (they change with `fabric region link`)
    let leafRemotes: RegionLeafRemote[] = [];
    // the ports each node was started with: a reload must not change them (nats-server refuses that)
    const startedWith: (typeof known)[number][] = [];
    const spawnOptions = (i: number, reload = false) => () => {
      const dir = nodeDir(i);
      for (const d of ["", "jetstream", "jwt", "run"]) ensurePrivateDir(join(dir, d));
      const k = reload ? startedWith[i] : known[i];
      if (k === undefined) throw new Error(`no node ${i}`);
      if (!reload) startedWith[i] = { ...k };
      const preload: Record<string, string> = {};
      for (const acc of ks.accounts()) preload[acc.publicKey] = ks.accountJwt(acc.name);
      const routes = known.flatMap((p, j) => (j !== i && p.cluster > 0 ? [`nats-route://${routeHost}:${p.cluster}`] : []));
      const config = hubServerConfig({
        serverName: names[i] ?? "hub",
        host: o.host,
        clientPort: k.client,
        monitorPort: k.monitor,
        leafPort: k.leaf,
        ...(o.leafTls === undefined ? {} : { leafTls: o.leafTls }),
        storeDir: join(dir, "jetstream"),
        resolverDir: join(dir, "jwt"),
        portsDir: join(dir, "run"),
        operatorJwt: ks.operatorJwt(),
        systemAccount: store.systemAccount,
        preload,
        ...(o.nodes > 1 ? { cluster: { name: DEFAULT_CLUSTER_NAME, port: k.cluster, routes } } : {}),
        ...(o.region === undefined ? {} : { domain: o.region }),
        leafRemotes,
      });
      const configFile = join(dir, "nats-server.conf");
      writeServerConfig(configFile, config);
      return { configFile, portsDir: join(dir, "run"), logFile: join(dir, "nats-server.log") };
    };
    // servers an earlier `fabric up` left running (it was killed) go first, all of them: a new node must not
    // join the routes of the old ones
    await Promise.all(
      names.map((_, i) => stopLeftoverServer({ pidFile: join(nodeDir(i), SERVER_PID_FILE), configFile: join(nodeDir(i), "nats-server.conf"), portsDir: join(nodeDir(i), "run"), logger: log })),
    );
    const nodes: HubNode[] = [];
    for (let i = 0; i < o.nodes; i++) {
      const start = () =>
        superviseNatsServer({
          name: names[i] ?? "hub",
          logger: log,
          spawnOptions: spawnOptions(i),
          pidFile: join(nodeDir(i), SERVER_PID_FILE),
          onStart: (proc) => {
            // Keep the ports the server picked, so a restart (and the other nodes' routes) find it again.
            known[i] = { client: proc.ports.client, monitor: proc.ports.monitoring, leaf: proc.ports.leafnode, cluster: proc.ports.cluster > 0 ? proc.ports.cluster : -1 };
          },
        });
      let sup: Supervisor | undefined;
      for (let attempt = 1; sup === undefined; attempt++) {
        try {
          sup = await start();
        } catch (err) {
          // a route port picked up front can be taken before the node binds it: pick another and try again
          const k = known[i];
          if (attempt >= 5 || k === undefined || o.clusterPort !== 0 || !/address already in use/.test(errorMessage(err))) throw err;
          k.cluster = (await pickFreePorts(1, routeHost))[0] ?? -1;
          log.warn({ node: names[i], port: k.cluster }, "route port taken meanwhile: trying another");
        }
      }
      supervisors.push(sup);
      const p = sup.current().ports;
      nodes.push({ name: names[i] ?? "hub", url: `nats://${routeHost}:${p.client}`, ports: p, logFile: join(nodeDir(i), "nats-server.log") });
    }
    for (const n of nodes) await waitHealthy(n.ports.monitoring, HUB_READY_TIMEOUT_MS);
    // the servers' figures in this process's metrics, read from their monitoring ports at each scrape
    unmonitor = monitorNatsServers(() => nodes.map((n, i) => ({ name: n.name, port: supervisors[i]?.current().ports.monitoring ?? 0 })));
    const urls = nodes.map((n) => n.url);

    const running = await startHubServices(
      {
        keystore: ks,
        keystoreCreated,
        dataDir: o.dataDir,
        urls,
        replicas: o.nodes >= 3 ? 3 : 1,
        ...serviceSettings(o),
        ...(o.region === undefined
          ? {}
          : {
              region: {
                name: o.region,
                applyRemotes: (remotes: RegionLeafRemote[]): Promise<void> => {
                  if (isDeepStrictEqual(remotes, leafRemotes)) return Promise.resolve();
                  leafRemotes = remotes;
                  // each node's config written again (and checked), then reloaded: nats-server adds and drops leaf remotes on SIGHUP
                  supervisors.forEach((sup, i) => {
                    spawnOptions(i, true)();
                    process.kill(sup.current().pid, "SIGHUP");
                  });
                  log.info({ remotes: remotes.length }, "leaf remotes to peer regions reloaded");
                  return Promise.resolve();
                },
              },
            }),
      },
      log,
    );
    servicesStop = () => running.stop();
    log.info({ urls, streams: running.streams }, "hub ready");
    return { ...running, nodes, keystore: ks, keystoreCreated, serverPids: () => supervisors.map((s) => s.current().pid), stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
