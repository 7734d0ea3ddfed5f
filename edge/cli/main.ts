#!/usr/bin/env node
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { Option } from "commander";
import { z } from "zod";
import { parse as parseYaml } from "yaml";
import {
  addMetricsOptions,
  createLogger,
  DEFAULT_EDGE_METRICS_PORT,
  fabricHome,
  InvalidInputError,
  newProgram,
  out,
  outJson,
  parseBytes,
  parseDurationSeconds,
  portOption,
  readJsonFile,
  runCli,
  say,
  startMetricsFromFlags,
  subjects,
  untilSignal,
  writeFileAtomic,
  type MetricsFlags,
} from "../../fabric/core/index.js";
import { connectWithCreds } from "../../identity/index.js";
import { DEFAULT_EDGE_CLIENT_PORT, DEFAULT_EDGE_MONITOR_PORT, OVERFLOW_POLICIES, siteReportSchema, type OverflowPolicy, type SiteReport } from "../../leafnode-config/index.js";
import { agentInboxPrefix, startEdge } from "../index.js";

const STATUS_TIMEOUT_MS = 3_000; // 3 s
const defaultEdgeDataDir = (): string => join(fabricHome(), "edge");
/** What `up` leaves for `status`: the site and where its server listens. */
const runStateSchema = z.strictObject({ site: z.string(), url: z.string(), pid: z.number().int() });

const overflowOption = (flag: string, what: string, def: OverflowPolicy): Option =>
  new Option(flag, `what a full ${what} buffer does`).choices(OVERFLOW_POLICIES).default(def);

interface UpFlags extends MetricsFlags {
  site: string;
  hub: string[];
  creds: string;
  data?: string;
  host: string;
  port: number;
  monitorPort: number;
  buffer: string;
  maxAge: string;
  eventsOverflow: OverflowPolicy;
  telemetryOverflow: OverflowPolicy;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  preAggregate?: string;
  rawTelemetry: boolean;
  mqttPort?: number;
  json?: boolean;
}

/** Window definitions from a JSON or YAML file: one or a list. */
function readDefinitions(file: string): unknown[] {
  const text = readFileSync(resolve(file), "utf8");
  let parsed: unknown;
  try {
    parsed = /\.ya?ml$/i.test(file) ? parseYaml(text) : JSON.parse(text);
  } catch (err) {
    throw new InvalidInputError(`--pre-aggregate ${file} is not valid ${/\.ya?ml$/i.test(file) ? "YAML" : "JSON"}: ${String(err)}`);
  }
  return Array.isArray(parsed) ? parsed : [parsed];
}

const program = newProgram("fabric-edge", "an edge site: a supervised leaf nats-server that buffers while the WAN is down and forwards in order");

addMetricsOptions(program.command("up"), DEFAULT_EDGE_METRICS_PORT)
  .description("run the site's leaf server and keep its streams flowing to the hub until Ctrl-C")
  .requiredOption("--site <name>", "the site's name (its JetStream domain and subject token)")
  .requiredOption("--hub <url...>", "the hub's leaf URL(s), e.g. nats-leaf://hub.example:7422")
  .requiredOption("--creds <file>", "the site's leaf credential (fabric-id issue leaf --site S)")
  .option("--data <dir>", "data directory (default: $FABRIC_HOME/edge)")
  .option("--host <addr>", "listen address for devices", "0.0.0.0")
  .addOption(portOption("--port <port>", "NATS port for devices (0: pick one)", DEFAULT_EDGE_CLIENT_PORT))
  .addOption(portOption("--monitor-port <port>", "nats-server monitoring port (0: pick one)", DEFAULT_EDGE_MONITOR_PORT))
  .option("--buffer <size>", "outage budget: bytes buffered for the hub (events get 10 %)", "10GB")
  .option("--max-age <duration>", "outage budget: how long a message may wait for the hub", "7d")
  .addOption(overflowOption("--events-overflow <policy>", "events", "reject-new"))
  .addOption(overflowOption("--telemetry-overflow <policy>", "telemetry", "drop-oldest"))
  .option("--tls-ca <file>", "CA to verify the hub's leaf listener with")
  .option("--tls-cert <file>", "client certificate for the hub (mTLS)")
  .option("--tls-key <file>", "client key for the hub (mTLS)")
  .addOption(portOption("--mqtt-port <port>", "run the site's own MQTT ingress on this port (0: pick one)"))
  .option("--pre-aggregate <file>", "windows computed at the site (JSON or YAML: one definition or a list); the hub gets their mergeable partials")
  .option("--no-raw-telemetry", "ship only the pre-aggregated partials (and events), not raw telemetry")
  .option("--json", "print what was started as JSON")
  .action(async (flags: UpFlags) => {
    const logger = createLogger({ name: "fabric-edge" });
    const dataDir = resolve(flags.data ?? defaultEdgeDataDir());
    const maxAgeSec = parseDurationSeconds(flags.maxAge, "--max-age");
    if (maxAgeSec === 0) throw new InvalidInputError("--max-age must be a duration above 0");
    const edge = await startEdge(
      {
        site: flags.site,
        hub: flags.hub,
        creds: resolve(flags.creds),
        dataDir,
        host: flags.host,
        port: flags.port,
        monitorPort: flags.monitorPort,
        buffer: { bytes: parseBytes(flags.buffer, "--buffer"), maxAgeMs: maxAgeSec * 1000, overflow: { events: flags.eventsOverflow, telemetry: flags.telemetryOverflow } },
        preAggregate: flags.preAggregate === undefined ? [] : readDefinitions(flags.preAggregate),
        shipRawTelemetry: flags.rawTelemetry,
        ...(flags.mqttPort === undefined ? {} : { mqtt: { port: flags.mqttPort } }),
        ...(flags.tlsCa === undefined && flags.tlsCert === undefined
          ? {}
          : { tls: { ...(flags.tlsCa === undefined ? {} : { ca: resolve(flags.tlsCa) }), ...(flags.tlsCert === undefined ? {} : { cert: resolve(flags.tlsCert), key: resolve(flags.tlsKey ?? "") }) } }),
      },
      logger,
    );
    const metrics = await startMetricsFromFlags(flags, logger, DEFAULT_EDGE_METRICS_PORT).catch(async (err: unknown) => {
      await edge.stop();
      throw err;
    });
    writeFileAtomic(join(dataDir, "edge.json"), `${JSON.stringify({ site: edge.site, url: edge.url, pid: process.pid })}\n`, 0o600);
    const summary = { site: edge.site, url: edge.url, ports: edge.ports, mqtt: edge.mqttPort, metrics: metrics?.port, link: edge.linkUp() ? "up" : "down", data: dataDir };
    if (flags.json === true) outJson(summary);
    else say(`site ${edge.site} up: devices connect to ${edge.url.replace("127.0.0.1", flags.host)} (monitoring :${edge.ports.monitoring}${edge.mqttPort > 0 ? `, MQTT :${edge.mqttPort}` : ""}${metrics === undefined ? "" : `, metrics ${metrics.url}`}); link ${summary.link}`);
    await untilSignal(async () => {
      await edge.stop();
      await metrics?.stop();
    });
    say("site stopped");
  });

const ago = (ms: number): string => `${Math.round(ms / 1000)} s`;
function renderReport(r: SiteReport, now = Date.now()): string {
  const lines = [`site ${r.site}: link ${r.link} for ${ago(now - r.linkSince)}, trust synced ${r.trustSyncedAt === 0 ? "not this run" : `${ago(now - r.trustSyncedAt)} ago`}, server restarts ${r.serverRestarts}`];
  for (const s of Object.values(r.streams)) {
    lines.push(
      `  ${s.stream.padEnd(15)} ${s.messages} msgs, ${(s.bytes / 1_048_576).toFixed(1)} of ${(s.maxBytes / 1_048_576).toFixed(1)} MiB (${s.overflow}${s.full ? ", FULL" : ""}); ` +
        `not yet at the hub: ${s.backlog} msgs, oldest ${ago(s.oldestBacklogMs)}; dropped ${s.dropped}`,
    );
  }
  return lines.join("\n");
}

program
  .command("status")
  .description("the running site's link, buffers and backlog (asks its agent)")
  .option("--data <dir>", "the site's data directory (default: $FABRIC_HOME/edge)")
  .option("--json", "JSON output")
  .action(async (flags: { data?: string; json?: boolean }) => {
    const dataDir = resolve(flags.data ?? defaultEdgeDataDir());
    const statePath = join(dataDir, "edge.json");
    const credsPath = join(dataDir, "agent.creds");
    if (!existsSync(statePath) || !existsSync(credsPath)) throw new InvalidInputError(`no site runs from ${dataDir}: start it with fabric-edge up (or give --data)`);
    const state = runStateSchema.parse(readJsonFile(statePath));
    const nc = await connectWithCreds(readFileSync(credsPath, "utf8"), { servers: state.url, name: "fabric-edge status", inboxPrefix: agentInboxPrefix(state.site), timeoutMs: STATUS_TIMEOUT_MS });
    try {
      const m = await nc.request(subjects.edge.status(state.site), "", { timeout: STATUS_TIMEOUT_MS });
      const report = siteReportSchema.parse(m.json());
      if (flags.json === true) outJson(report);
      else out(renderReport(report));
    } finally {
      await nc.close();
    }
  });

await runCli(program);
