#!/usr/bin/env node
import cluster from "node:cluster";
import { Option, type Command } from "commander";
import { existsSync, readFileSync } from "node:fs";
import { resolve } from "node:path";
import {
  addMetricsOptions,
  clusterMetrics,
  createLogger,
  DEFAULT_INGRESS_METRICS_PORT,
  DEFAULT_METRICS_PORT,
  defaultHubDataDir,
  defaultKeystoreDir,
  initTracing,
  InvalidInputError,
  monitorNatsServers,
  newProgram,
  out,
  outJson,
  portOption,
  runCli,
  say,
  startMetricsFromFlags,
  untilSignal,
  type MetricsFlags,
} from "../core/index.js";
import { assertRegionName, Keystore } from "../../identity/index.js";
import { DEFAULT_CLIENT_PORT, DEFAULT_CLUSTER_PORT, DEFAULT_HOST, DEFAULT_LEAF_PORT, DEFAULT_MONITOR_PORT, hubCredsPath, hubStatus, serveHub, startHub, startStandaloneIngress, writeClusterConfigs } from "../hub/index.js";
import { renderHubStatus, renderReady } from "./render.js";
import { runWorkers } from "./workers.js";
import { monitoredServersOf } from "./monitor-urls.js";
import { addWindowCommands } from "./windows.js";
import { addSiteCommands } from "./sites.js";
import { addRegionCommands } from "./regions.js";
import { addDeviceCommands } from "./devices.js";
import { addBenchCommand } from "./bench.js";
import { addSinkCommands } from "./sinks.js";
import { addLeafTlsOptions, leafTlsFromFlags, type LeafTlsFlags } from "./leaf-tls.js";
import { addServiceOptions, mqttPortOption, mqttWsPortOption, serviceOptionsFromFlags, type ServiceFlags } from "./service-flags.js";

interface UpFlags extends LeafTlsFlags, ServiceFlags {
  nodes: string;
  port: number;
  monitorPort: number;
  leafPort: number;
  clusterPort: number;
}

const program = newProgram("fabric", "the fabric hub: NATS JetStream with decentralised identity");

addServiceOptions(addLeafTlsOptions(program.command("up"), ""))
  .description("start the hub (one node, or a local cluster with --nodes 3) and keep it running until Ctrl-C")
  .addOption(new Option("--nodes <n>", "nodes: 1, or 3 for a local JetStream cluster (streams R3)").default("1"))
  .addOption(portOption("--port <port>", "NATS client port (0: pick one)", DEFAULT_CLIENT_PORT))
  .addOption(portOption("--monitor-port <port>", "nats-server monitoring port (0: pick one)", DEFAULT_MONITOR_PORT))
  .addOption(portOption("--leaf-port <port>", "leaf node port (0: pick one)", DEFAULT_LEAF_PORT))
  .addOption(portOption("--cluster-port <port>", "first cluster route port with --nodes > 1 (0: pick)", DEFAULT_CLUSTER_PORT))
  .option("--region <name>", "this hub is a region (its JetStream domain): link it to other regions with `fabric region link`; each region runs on its own copy of the operator's keystore")
  .action(async (flags: UpFlags & { region?: string }) => {
    const services = serviceOptionsFromFlags(flags);
    const leafTls = leafTlsFromFlags(flags, (f) => resolve(f));
    const logger = createLogger({ name: "fabric" });
    const tracing = await initTracing({ serviceName: "fabric", logger });
    const nodes = Number(flags.nodes);
    if (!Number.isInteger(nodes)) throw new InvalidInputError(`--nodes ${JSON.stringify(flags.nodes)} is not a whole number`);
    const hub = await startHub(
      {
        dataDir: resolve(flags.data ?? defaultHubDataDir()),
        keystoreDir: resolve(flags.store ?? defaultKeystoreDir()),
        nodes,
        host: flags.host,
        port: flags.port,
        monitorPort: flags.monitorPort,
        leafPort: flags.leafPort,
        ...leafTls,
        clusterPort: flags.clusterPort,
        ...services,
        ...(flags.region === undefined ? {} : { region: assertRegionName(flags.region) }),
      },
      logger,
    );
    const metrics = await startMetricsFromFlags(flags, logger, DEFAULT_METRICS_PORT).catch(async (err: unknown) => {
      await hub.stop();
      throw err;
    });
    const summary = {
      urls: hub.urls,
      mqtt: hub.mqtt,
      grpc: hub.grpc,
      statusPage: hub.statusPage,
      exchange: hub.exchange,
      metrics: metrics === undefined ? undefined : { port: metrics.port, url: metrics.url },
      nodes: hub.nodes.map((n) => ({ name: n.name, url: n.url, ports: n.ports, log: n.logFile })),
      keystore: hub.keystore.dir,
      keystoreCreated: hub.keystoreCreated,
      devCreds: hub.devCreds,
      streams: hub.streams,
    };
    if (flags.json === true) outJson(summary);
    else say(renderReady(summary));
    await untilSignal(async () => {
      await hub.stop();
      await metrics?.stop();
      await tracing?.shutdown();
    });
    say("hub stopped");
  });

addServiceOptions(program.command("serve"))
  .description("run the hub's services (identity service, sites, window workers, MQTT ingress, gRPC gateway) against servers started elsewhere, e.g. from `fabric config hub`")
  .requiredOption("--server <url...>", "the hub's servers (nats://host:port)")
  .addOption(new Option("--replicas <n>", "replicas of the hub's streams: 1, or 3 on a cluster of 3 or more").default("1"))
  .option("--monitor <url...>", "the servers' monitoring listeners (http://host:8222): their figures (connections, streams, consumer lag) join this process's /metrics")
  .option("--region <name>", "the servers are this region (fabric config hub --region): apply the region links of --data (copies, consumers, relay of revocations)")
  .action(async (flags: ServiceFlags & { server: string[]; replicas: string; monitor?: string[]; region?: string }) => {
    const services = serviceOptionsFromFlags(flags);
    const monitored = monitoredServersOf(flags.monitor ?? []);
    const logger = createLogger({ name: "fabric" });
    const tracing = await initTracing({ serviceName: "fabric", logger });
    const running = await serveHub(
      {
        dataDir: resolve(flags.data ?? defaultHubDataDir()),
        keystoreDir: resolve(flags.store ?? defaultKeystoreDir()),
        servers: flags.server,
        replicas: Number(flags.replicas),
        host: flags.host,
        ...services,
        ...(flags.region === undefined ? {} : { region: assertRegionName(flags.region) }),
      },
      logger,
    );
    const metrics = await startMetricsFromFlags(flags, logger, DEFAULT_METRICS_PORT).catch(async (err: unknown) => {
      await running.stop();
      throw err;
    });
    const unmonitor = metrics === undefined || monitored.length === 0 ? undefined : monitorNatsServers(() => monitored);
    const summary = { urls: running.urls, mqtt: running.mqtt, grpc: running.grpc, statusPage: running.statusPage, exchange: running.exchange, metrics: metrics === undefined ? undefined : { port: metrics.port, url: metrics.url }, streams: running.streams };
    if (flags.json === true) outJson(summary);
    else say(`fabric services up against ${running.urls.join(", ")}${running.grpc === undefined ? "" : `; gRPC API :${running.grpc}`}${running.mqtt === undefined ? "" : `; MQTT :${running.mqtt.tcp}`}${running.statusPage === undefined ? "" : `; status page ${running.statusPage.url}`}${metrics === undefined ? "" : `; metrics ${metrics.url}`}`);
    await untilSignal(async () => {
      unmonitor?.();
      await running.stop();
      await metrics?.stop();
      await tracing?.shutdown();
    });
    say("services stopped");
  });

program
  .command("status")
  .description("servers and their health, JetStream usage, streams, consumer lag, clients by role")
  .option("--store <dir>", "keystore directory (default: $FABRIC_HOME/keys)")
  .option("--server <url...>", "hub URL(s) (default: what fabric up recorded)")
  .option("--data <dir>", "the hub's data directory: its credential shows the MQTT ingress too (default: $FABRIC_HOME/hub)")
  .option("--json", "JSON output")
  .action(async (flags: { store?: string; server?: string[]; data?: string; json?: boolean }) => {
    const ks = Keystore.open(resolve(flags.store ?? defaultKeystoreDir()));
    const servers = flags.server ?? ks.storeFile().hubUrls;
    const tenant = ks.tenantAccounts()[0];
    const credsPath = tenant === undefined ? undefined : hubCredsPath(resolve(flags.data ?? defaultHubDataDir()), tenant.name);
    const status = await hubStatus(ks, servers, credsPath !== undefined && existsSync(credsPath) ? readFileSync(credsPath, "utf8") : undefined);
    if (flags.json === true) outJson(status);
    else out(renderHubStatus(status));
    if (status.servers.some((s) => !s.healthy)) process.exitCode = 1;
  });

addMetricsOptions(program.command("ingress"), DEFAULT_INGRESS_METRICS_PORT)
  .description("run an MQTT ingress process of its own against a running hub (several may serve one hub)")
  .option("--server <url...>", "hub URL(s) (default: what fabric up recorded)")
  .option("--host <addr>", "listen address", DEFAULT_HOST)
  .addOption(mqttPortOption())
  .addOption(mqttWsPortOption())
  .option("--config <file>", "ingress options (JSON): limits, TLS, legacy topic mappings")
  .option("--store <dir>", "keystore directory, on the hub's machine (default: $FABRIC_HOME/keys)")
  .option("--data <dir>", "the hub's data directory, for its credentials (default: $FABRIC_HOME/hub)")
  .option("--account <name>", "tenant account to serve (default: the first)")
  .option("--creds <file>", "an ingress credential (role ingress), for a remote hub")
  .option("--watcher-creds <file>", "a system account watcher credential, for a remote hub")
  .option("--operator <key>", "the operator's public key, for a remote hub")
  .option("--workers <n>", "worker processes sharing the listeners (more cores); default 1", "1")
  .option("--json", "print the ports as JSON on stdout once listening")
  .action(
    async (flags: MetricsFlags & {
      workers: string;
      server?: string[];
      host: string;
      mqttPort: number;
      mqttWsPort: number;
      config?: string;
      store?: string;
      data?: string;
      account?: string;
      creds?: string;
      watcherCreds?: string;
      operator?: string;
      json?: boolean;
    }) => {
      const workers = Number(flags.workers);
      if (!Number.isInteger(workers) || workers < 1 || workers > 64) throw new InvalidInputError(`--workers ${JSON.stringify(flags.workers)} must be a whole number from 1 to 64`);
      const logger = createLogger({ name: "fabric-ingress" });
      const tracing = await initTracing({ serviceName: "fabric-ingress", logger });
      const remote = flags.creds !== undefined;
      const keystoreDir = resolve(flags.store ?? defaultKeystoreDir());
      const servers = flags.server ?? (remote ? [] : Keystore.open(keystoreDir).storeFile().hubUrls);
      // one metrics port: the process itself, or with --workers N the primary, summing its workers' metrics
      const metrics = cluster.isWorker ? undefined : await startMetricsFromFlags(flags, logger, DEFAULT_INGRESS_METRICS_PORT, workers > 1 ? { metrics: clusterMetrics() } : {});
      try {
        await runWorkers(
          workers,
          () =>
            startStandaloneIngress(
              {
                servers,
                host: flags.host,
                port: flags.mqttPort,
                wsPort: flags.mqttWsPort,
                ...(flags.config === undefined ? {} : { configFile: resolve(flags.config) }),
                ...(remote
                  ? { credsFile: flags.creds, watcherCredsFile: flags.watcherCreds, operatorKey: flags.operator }
                  : { keystoreDir, dataDir: resolve(flags.data ?? defaultHubDataDir()), ...(flags.account === undefined ? {} : { account: flags.account }) }),
              },
              logger,
            ),
          (ports) => {
            if (flags.json === true) outJson({ ...ports, metrics: metrics?.port });
            else say(`MQTT ingress listening: mqtt://${flags.host}:${ports.tcp}${ports.ws > 0 ? ` ws://${flags.host}:${ports.ws}/mqtt` : ""}${metrics === undefined ? "" : `; metrics ${metrics.url}`}`);
          },
        );
      } finally {
        await metrics?.stop();
        await tracing?.shutdown();
      }
    },
  );

addWindowCommands(program);
addSiteCommands(program);
addRegionCommands(program);
addDeviceCommands(program);
addBenchCommand(program);
addSinkCommands(program);

const config = program.command("config").description("generate configs");
addLeafTlsOptions(config.command("hub"), ": an absolute path on each host")
  .description("per-host nats-server configs for a multi-host hub cluster, checked with nats-server -t")
  .requiredOption("--hosts <host...>", "the hosts (3 or more, odd), as the peers reach them")
  .option("--out <dir>", "where to write hub-N.conf", "hub-configs")
  .option("--store <dir>", "keystore directory (default: $FABRIC_HOME/keys)")
  .option("--data-dir <dir>", "data directory on each host", "/var/lib/fabric")
  .addOption(portOption("--port <port>", "client port", DEFAULT_CLIENT_PORT))
  .addOption(portOption("--cluster-port <port>", "route port", DEFAULT_CLUSTER_PORT))
  .addOption(portOption("--monitor-port <port>", "monitoring port", DEFAULT_MONITOR_PORT))
  .addOption(portOption("--leaf-port <port>", "leaf node port", DEFAULT_LEAF_PORT))
  .option("--region <name>", "the cluster is this region (its JetStream domain); the keystore (a copy of the operator's) then serves it")
  .option("--link <peer=url...>", "with --region: dial this peer region's leaf listener (nats-leaf://host:7422); its credential is written to <out>/regions/")
  .action(async (flags: LeafTlsFlags & { hosts: string[]; out: string; store?: string; dataDir: string; port: number; clusterPort: number; monitorPort: number; leafPort: number; region?: string; link?: string[] }, _cmd: Command) => {
    const leafTls = leafTlsFromFlags(flags, (f) => f);
    const ks = Keystore.open(resolve(flags.store ?? defaultKeystoreDir()));
    if (flags.link !== undefined && flags.region === undefined) throw new InvalidInputError("--link needs --region");
    const dials = (flags.link ?? []).map((spec) => {
      const at = spec.indexOf("=");
      if (at <= 0) throw new InvalidInputError(`--link ${JSON.stringify(spec)}: give peer=nats-leaf://host:port`);
      return { peer: spec.slice(0, at), urls: [spec.slice(at + 1)] };
    });
    const { files, uncheckedFiles, regionFiles } = await writeClusterConfigs(ks, resolve(flags.out), {
      ...(flags.region === undefined ? {} : { region: { name: assertRegionName(flags.region), dials } }),
      hosts: flags.hosts,
      clientPort: flags.port,
      clusterPort: flags.clusterPort,
      monitorPort: flags.monitorPort,
      leafPort: flags.leafPort,
      dataDir: flags.dataDir,
      ...leafTls,
    });
    out(files.join("\n"));
    if (uncheckedFiles.length > 0) say(`not on this machine, so checked without them: ${uncheckedFiles.join(", ")} (they must exist on every host)`);
    say(`wrote ${files.length} configs (0600: they carry the operator JWT); start each host with: nats-server -c hub-N.conf`);
    if (regionFiles.length > 0) {
      say(`region ${flags.region ?? ""}: copy ${regionFiles.filter((f) => f.endsWith(".creds")).join(", ")} to ${flags.dataDir}/regions/ on every host, and region-links.json into fabric serve's --data directory (run it with --region ${flags.region ?? ""})`);
    }
  });

await runCli(program);
