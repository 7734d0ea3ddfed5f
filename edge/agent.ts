import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import {
  acquireLockFile,
  ConfigError,
  ensurePrivateDir,
  errorMessage,
  lockHolder,
  monitorNatsServers,
  parseInput,
  SERVER_PID_FILE,
  subjects,
  superviseNatsServer,
  type Logger,
  type ServerPorts,
  type Supervisor,
} from "../fabric/core/index.js";
import { z } from "zod";
import { connectWithCreds, parseCreds, peekJwt, requestSiteTrust } from "../identity/index.js";
import { writeEdgeServerConfig, type SiteReport, type SiteSpecInput, type SiteStreamKind } from "../leafnode-config/index.js";
import type { WindowWorker } from "../streams/index.js";
import type { Ingress } from "../ingress/index.js";
import { startSiteIngress } from "./site-ingress.js";
import { EDGE_REJECTED_BYTES, ensureWindowStores, parsePreAggregate, startPreAggregation } from "./pre-aggregate.js";
import { agentInboxPrefix, fetchTrustBeforeStart } from "./bootstrap.js";
import { EdgeError } from "./errors.js";
import { edgeOptionsSchema, type EdgeOptions, type EdgeOptionsInput } from "./options.js";
import { DropCounter, ensureSiteStreams, streamReport } from "./site-streams.js";
import { SiteLink } from "./site-link.js";
import { monitorSite } from "./metrics.js";
import { applyToServer, keepSiteCredentials, loadSiteCredentials, loadTrust, mergeTrust, saveTrust, type KeptTrust } from "./trust.js";

/** Room the site's JetStream keeps beyond the buffers (consumer state, metadata). */
const STORE_HEADROOM_BYTES = 64 * 1024 * 1024; // 64 MiB
const REQUEST_TIMEOUT_MS = 5_000; // 5 s

export interface RunningEdge {
  site: string;
  /** `nats://127.0.0.1:<port>`: the site's server, for devices. */
  url: string;
  ports: ServerPorts;
  /** The site's MQTT ingress's port (0 without one). */
  mqttPort: number;
  /** The report the agent publishes, made now. */
  report(): Promise<SiteReport>;
  linkUp(): boolean;
  /** Resolves once the link has been up and the agent has caught up with it (trust synced, registered). */
  caughtUp(): Promise<void>;
  stop(): Promise<void>;
}

const userTagsSchema = z.looseObject({ nats: z.looseObject({ tags: z.array(z.string()).optional() }).optional() });

/** The site a leaf credential was issued for (its `site:` tag), or undefined. */
function siteOfCreds(creds: string): string | undefined {
  try {
    const tags = userTagsSchema.parse(peekJwt(parseCreds(creds).jwt)).nats?.tags ?? [];
    return tags.find((t) => t.startsWith("site:"))?.slice("site:".length);
  } catch {
    return undefined;
  }
}

/**
 * `fabric-edge up`: fetches the site's trust from the hub (or goes on with what it kept, when the hub is away),
 * generates and checks the leaf server's config, starts and supervises it, keeps the site's streams and their
 * sourcing consumers, and while it runs: follows the leaf link, and whenever it returns applies the hub's account
 * JWTs first (revocations made meanwhile), registers the site, drains events before telemetry; reports health
 * and backlog on `$FABRIC.edge.<site>.status`.
 */
export async function startEdge(input: EdgeOptionsInput, logger: Logger): Promise<RunningEdge> {
  const o: EdgeOptions = parseInput(edgeOptionsSchema, input, "edge options");
  const windows = parsePreAggregate(o.site, o.preAggregate);
  const log = logger.child({ component: "edge", site: o.site });
  const dataDir = resolve(o.dataDir);
  ensurePrivateDir(dataDir);
  const lockPath = join(dataDir, "fabric-edge.lock");
  let release: () => void;
  try {
    release = await acquireLockFile(lockPath, 0);
  } catch (err) {
    throw new ConfigError(`data directory ${dataDir} is in use by another fabric-edge (pid ${lockHolder(lockPath) ?? "?"})`, { cause: err });
  }
  const credsFile = resolve(o.creds);
  let leafCreds: string;
  try {
    leafCreds = readFileSync(credsFile, "utf8");
  } catch (err) {
    release();
    throw new ConfigError(`cannot read the leaf credential ${credsFile}: ${errorMessage(err)}`, { cause: err });
  }

  const credSite = siteOfCreds(leafCreds);
  if (credSite !== o.site) {
    release();
    throw new ConfigError(`the leaf credential ${credsFile} is ${credSite === undefined ? "not a site's leaf credential" : `site ${credSite}'s`}, not site ${o.site}'s (--site)`);
  }

  let supervisor: Supervisor | undefined;
  let nc: NatsConnection | undefined;
  const timers: NodeJS.Timeout[] = [];
  const subs: Subscription[] = [];
  const workers: WindowWorker[] = [];
  const ingresses: Ingress[] = [];
  const links: SiteLink[] = [];
  const unmonitor: (() => void)[] = [];
  const stop = async (): Promise<void> => {
    for (const u of unmonitor.splice(0)) u();
    for (const t of timers.splice(0)) clearInterval(t);
    for (const l of links.splice(0)) l.stop();
    for (const s of subs.splice(0)) s.unsubscribe();
    for (const i of ingresses.splice(0)) await i.stop().catch(() => undefined);
    for (const w of workers.splice(0)) await w.stop().catch(() => undefined);
    await nc?.drain().catch(() => undefined);
    await supervisor?.stop();
    release();
  };

  try {
    // --- trust: fresh from the hub before any device can connect, else what the last run kept ---
    let trust: KeptTrust | undefined = loadTrust(dataDir);
    let creds = loadSiteCredentials(dataDir);
    const want = { agent: creds.agent === undefined, ingress: o.mqtt !== undefined && (creds.ingress === undefined || creds.watcher === undefined) };
    let trustSyncedAt = 0;
    try {
      const fetched = await fetchTrustBeforeStart({ ...o, creds: credsFile }, leafCreds, want, trust === undefined || want.agent || want.ingress ? o.firstStartTrustTimeoutMs : o.startTrustTimeoutMs, log);
      trust = mergeTrust(trust, fetched).trust;
      saveTrust(dataDir, trust);
      creds = keepSiteCredentials(dataDir, creds, fetched);
      trustSyncedAt = Date.now();
      log.info("trust fetched from the hub");
    } catch (err) {
      if (trust === undefined || want.agent || want.ingress) throw err;
      log.warn({ err: errorMessage(err) }, "the hub is not reachable: starting with the account JWTs kept from the last run");
    }
    if (trust === undefined || creds.agent === undefined) throw new EdgeError("FABRIC_ERR_EDGE_STATE", "the site has no trust yet");
    const agent = creds.agent;
    let held: KeptTrust = trust;

    // --- the site's server ---
    for (const d of ["jetstream", "jwt", "run"]) ensurePrivateDir(join(dataDir, d));
    let ports = { client: o.port === 0 ? -1 : o.port, monitor: o.monitorPort === 0 ? -1 : o.monitorPort };
    const configFile = join(dataDir, "nats-server.conf");
    const spec = (): SiteSpecInput => ({
      site: o.site,
      hub: { urls: o.hub, creds: credsFile, ...(o.tls === undefined ? {} : { tls: o.tls }) },
      trust: held,
      listen: { host: o.host, port: ports.client, monitorPort: ports.monitor },
      storeDir: join(dataDir, "jetstream"),
      resolverDir: join(dataDir, "jwt"),
      portsDir: join(dataDir, "run"),
      maxFileStoreBytes: o.buffer.bytes + EDGE_REJECTED_BYTES + STORE_HEADROOM_BYTES,
    });
    supervisor = await superviseNatsServer({
      name: `edge-${o.site}`,
      logger: log,
      pidFile: join(dataDir, SERVER_PID_FILE),
      spawnOptions: () => {
        writeEdgeServerConfig(configFile, spec());
        return { configFile, portsDir: join(dataDir, "run"), logFile: join(dataDir, "nats-server.log") };
      },
      // a restart binds the ports the first start picked, so devices and the agent find it again
      onStart: (proc) => void (ports = { client: proc.ports.client, monitor: proc.ports.monitoring }),
    });
    const sup = supervisor;
    // the leaf server's figures in this process's metrics (read from its monitoring port at each scrape)
    unmonitor.push(monitorNatsServers(() => [{ name: `edge-${o.site}`, port: sup.current().ports.monitoring }]));
    const serverPorts = sup.current().ports;
    const url = `nats://127.0.0.1:${serverPorts.client}`;

    // --- the agent's own connection: streams, reports, talking to the hub over the link ---
    const conn = await connectWithCreds(agent, { servers: url, name: `fabric-edge ${o.site}`, inboxPrefix: agentInboxPrefix(o.site), reconnect: true });
    nc = conn;
    const jsm: JetStreamManager = await jetstreamManager(conn, { timeout: REQUEST_TIMEOUT_MS });
    const preAggregates = windows.length > 0;
    const kinds: SiteStreamKind[] = preAggregates ? ["events", "telemetry", "aggregates"] : ["events", "telemetry"];
    const shipping: SiteStreamKind[] = kinds.filter((k) => k !== "telemetry" || o.shipRawTelemetry);
    await ensureSiteStreams(jsm, o.site, o.buffer, kinds, shipping);
    if (preAggregates) {
      await ensureWindowStores(conn, jsm);
      workers.push(...(await startPreAggregation(conn, o.site, windows, log)));
    }
    let mqttPort = 0;
    if (o.mqtt !== undefined) {
      const ingress = await startSiteIngress({ nc: conn, jsm, url, host: o.host, port: o.mqtt.port, creds, trust: held, logger: log });
      ingresses.push(ingress);
      mqttPort = ingress.ports.tcp;
    }

    // --- the link ---
    const link = new SiteLink({
      site: o.site,
      nc: conn,
      jsm,
      monitorPort: () => ports.monitor,
      shipping,
      ensureStreams: () => ensureSiteStreams(jsm, o.site, o.buffer, kinds, shipping),
      syncTrust: async () => {
        const fetched = await requestSiteTrust(conn, leafCreds);
        const merged = mergeTrust(held, fetched);
        await applyToServer(url, fetched.syncCreds, merged.changed, log);
        held = merged.trust;
        saveTrust(dataDir, held);
        trustSyncedAt = Date.now();
      },
      trustSyncEveryMs: o.trustSyncEveryMs,
      logger: log,
    });
    links.push(link);

    // --- reports ---
    const drops = { events: new DropCounter(), telemetry: new DropCounter(), aggregates: new DropCounter() };
    const streamOf = (k: SiteStreamKind) => streamReport(jsm, o.site, k, o.buffer, drops[k], shipping.includes(k), preAggregates);
    const report = async (): Promise<SiteReport> => ({
      site: o.site,
      at: Date.now(),
      link: link.up() ? "up" : "down",
      linkSince: link.linkSince(),
      streams: {
        events: await streamOf("events"),
        telemetry: await streamOf("telemetry"),
        ...(preAggregates ? { aggregates: await streamOf("aggregates") } : {}),
      },
      shipping,
      trustSyncedAt,
      serverRestarts: sup.restarts(),
      sourceRestarts: link.sourceRestarts(),
    });
    const statusSubject = subjects.edge.status(o.site);
    timers.push(
      setInterval(() => {
        report().then(
          (r) => conn.publish(statusSubject, JSON.stringify(r)),
          (err: unknown) => log.debug({ err: errorMessage(err) }, "could not make a report"),
        );
      }, o.reportEveryMs),
    );
    subs.push(
      conn.subscribe(statusSubject, {
        callback: (_err, m) => {
          if (m.reply === undefined || m.reply === "") return; // a report, ours or not
          report().then(
            (r) => m.respond(JSON.stringify(r)),
            (err: unknown) => m.respond(JSON.stringify({ error: errorMessage(err) })),
          );
        },
      }),
    );
    for (const t of timers) t.unref();
    unmonitor.push(monitorSite(report));
    await link.start();
    log.info({ url, monitor: serverPorts.monitoring }, "site up");
    return {
      site: o.site,
      url,
      ports: serverPorts,
      mqttPort,
      report,
      linkUp: () => link.up(),
      caughtUp: () => link.caughtUp(),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
