import { readFileSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { Option, type Command } from "commander";
import { defaultKeystoreDir, InvalidInputError, out, outJson, parseDurationSeconds, parseInput, say } from "../core/index.js";
import { issueUser, Keystore } from "../../identity/index.js";
import { assertTargetAllowed, benchChart, benchOptionsSchema, BENCH_PATHS, renderBench, runBench, type BenchPath, type BenchResult, type BenchTargets } from "../loadgen/index.js";

interface BenchFlags {
  connections: string;
  rate: string;
  size: string;
  qos: string;
  compression: string;
  batch: string;
  duration: string;
  server?: string[];
  mqtt: string;
  grpc: string;
  creds?: string;
  store?: string;
  json?: boolean;
  chart?: string;
  targetIsMine?: boolean;
}

/** A service credential: the one given, or a one-hour one issued from the keystore (never stored). */
function credsOf(flags: BenchFlags): { creds: string; servers: string[] } {
  if (flags.creds !== undefined) return { creds: readFileSync(resolve(flags.creds), "utf8"), servers: flags.server ?? [] };
  const ks = Keystore.open(resolve(flags.store ?? defaultKeystoreDir()));
  const tenant = ks.tenantAccounts()[0];
  if (tenant === undefined) throw new InvalidInputError("the keystore has no tenant account: give --creds");
  const issued = issueUser(ks, { account: tenant.name, role: "service", name: "fabric-bench", expiresInSec: 3_600, ephemeral: true });
  return { creds: issued.creds ?? "", servers: flags.server ?? ks.storeFile().hubUrls };
}

const whole = (v: string, flag: string): number => {
  const x = Number(v);
  if (!Number.isInteger(x)) throw new InvalidInputError(`${flag} ${JSON.stringify(v)} is not a whole number`);
  return x;
};

/** `fabric bench nats|mqtt|grpc|compare`: the same load through the fabric's entries, measured end to end. */
export function addBenchCommand(program: Command): void {
  program
    .command("bench <path>")
    .description(`load a fabric through one entry (${BENCH_PATHS.join(", ")}) or all three in turn (compare): readings offered and stored per second, publish → consumer latency, the fabric's CPU per 1 000 readings and per connection`)
    .option("--connections <n>", "publishing connections", "4")
    .option("--rate <n>", "readings a second offered, over all connections", "1000")
    .option("--size <bytes>", "payload size (a JSON reading padded to it)", "100")
    .addOption(new Option("--qos <n>", "MQTT QoS").choices(["0", "1", "2"]).default("1"))
    .addOption(new Option("--compression <c>", "gzip: gRPC call compression, and for MQTT and NATS gzip payloads (MQTT 5 user property / NATS header content-encoding); deflate: gRPC only; grpc-js has no zstd").choices(["none", "gzip", "deflate"]).default("none"))
    .option("--batch <k>", "readings a connection publishes back to back before waiting for their acknowledgements", "500")
    .option("--duration <d>", "how long each path runs (e.g. 10s, 1m)", "10s")
    .option("--server <url...>", "NATS URLs of the fabric (default: what fabric up recorded)")
    .option("--mqtt <url>", "the MQTT ingress", "mqtt://127.0.0.1:1883")
    .option("--grpc <host:port>", "the gRPC gateway", "127.0.0.1:50051")
    .option("--creds <file>", "a service credential (default: a one-hour one from the keystore)")
    .option("--store <dir>", "keystore directory (default: $FABRIC_HOME/keys)")
    .option("--json", "JSON output")
    .option("--chart <file.html>", "also write a chart of p99 latency over time (self-contained HTML)")
    .option("--target-is-mine", "allow a target that is not on loopback")
    .action(async (path: string, flags: BenchFlags) => {
      const paths: BenchPath[] = path === "compare" ? [...BENCH_PATHS] : BENCH_PATHS.includes(path as BenchPath) ? [path as BenchPath] : [];
      if (paths.length === 0) throw new InvalidInputError(`path ${JSON.stringify(path)}: use ${BENCH_PATHS.join(", ")} or compare`);
      const o = parseInput(
        benchOptionsSchema,
        {
          connections: whole(flags.connections, "--connections"),
          rate: whole(flags.rate, "--rate"),
          size: whole(flags.size, "--size"),
          qos: whole(flags.qos, "--qos"),
          compression: flags.compression,
          batch: whole(flags.batch, "--batch"),
          durationMs: parseDurationSeconds(flags.duration, "--duration") * 1000,
        },
        "bench options",
      );
      const { creds, servers } = credsOf(flags);
      if (servers.length === 0) throw new InvalidInputError("no NATS URL known: give --server nats://host:port");
      const targets: BenchTargets = { servers, creds, ...(paths.includes("mqtt") ? { mqtt: flags.mqtt } : {}), ...(paths.includes("grpc") ? { grpc: flags.grpc } : {}) };
      assertTargetAllowed(targets, flags.targetIsMine === true);
      const results: BenchResult[] = [];
      for (const p of paths) results.push(await runBench(p, targets, o, (line) => say(line)));
      if (flags.chart !== undefined) writeFileSync(resolve(flags.chart), benchChart(results));
      if (flags.json === true) outJson(path === "compare" ? results : results[0]);
      else out(renderBench(results));
    });
}
