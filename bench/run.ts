// Benchmarks: `npm run bench` runs all, `npm run bench -- identity` one. Each writes its own section of
// bench/RESULTS.md. They start real nats-servers on loopback through the test harness.
import { Harness } from "../test/harness/index.js";
import { benchIssuance, benchRevocation, issuanceMarkdown, revocationMarkdown } from "./identity.js";
import { machine, writeSection } from "./lib.js";
import { benchMqtt, mqttMarkdown } from "./mqtt.js";
import { benchGrpc, grpcMarkdown } from "./grpc.js";
import { benchWindows, windowsMarkdown } from "./windows.js";
import { benchEdge, edgeMarkdown } from "./edge.js";
import { benchMetrics, metricsMarkdown, METRICS_ROUNDS } from "./metrics.js";
import { benchSink, sinkMarkdown } from "./sink.js";
import { benchExchange, exchangeMarkdown, EXCHANGE_CONCURRENCY, EXCHANGE_COUNT } from "./exchange.js";
import { benchRegions, regionsMarkdown, REGIONS_CUT_MS, REGIONS_CUTS, REGIONS_DELAY_MS, REGIONS_LATENCY_SECONDS, REGIONS_RATE, REGIONS_REVOKED, REGIONS_UP_MS } from "./regions.js";

const BENCHES: Record<string, (h: Harness) => Promise<string>> = {
  identity: async (h) => {
    console.log("identity: credential issuance (3 s per signer)…");
    const issuance = await benchIssuance(h);
    console.log(issuanceMarkdown(issuance));
    const revocation = [];
    for (const nodes of [1, 3]) {
      for (const mode of ["push", "kick+push"] as const) {
        console.log(`identity: revocation latency, ${nodes} node(s), 1 000 connected devices, ${mode}…`);
        revocation.push(await benchRevocation(h, nodes, 1_000, 100, mode));
        await h.dispose();
      }
    }
    console.log(revocationMarkdown(revocation));
    return [
      "## Identity (issue 2)",
      "",
      `Measured ${new Date().toISOString().slice(0, 10)} on ${machine()}. Rerun: \`npm run bench -- identity\`.`,
      "",
      "### Credential issuance",
      "",
      issuanceMarkdown(issuance),
      "",
      "### Revocation latency",
      "",
      "1 000 devices connected (spread over the nodes), 100 of them revoked one at a time. *send → disconnect*: from",
      "sending to the revoked client's connection closing; *revoke → disconnect*: the whole path, from `revokeUsers`",
      "(keystore update, newly signed account JWT) on. The anchor pushes the account JWT alone: nats-server then",
      "decodes and verifies the JWT of every client of the account, in no set order, before it reaches the victim",
      "(O(clients)). The fabric first kicks the revoked key's connections on every server (CONNZ by user, KICK by",
      "connection id), then pushes the update that keeps them out. In the cluster everything enters one node and",
      "reaches the others over routes; victims sit on every node.",
      "",
      revocationMarkdown(revocation),
    ].join("\n");
  },
};

BENCHES["metrics"] = async (h) => {
  console.log("metrics: MQTT QoS 1 and gRPC Consume throughput with metrics on and off (FABRIC_METRICS=off), alternating…");
  const md = metricsMarkdown(await benchMetrics(h));
  console.log(md);
  return [
    "## Metrics cost (issue 11)",
    "",
    `Measured ${new Date().toISOString().slice(0, 10)} on ${machine()}. Rerun: \`npm run bench -- metrics\`.`,
    "",
    `Each row runs ${METRICS_ROUNDS} rounds; each round starts the component twice in a process of its own (the ingress against one`,
    "hub; `fabric up` on a fresh data directory), once with `FABRIC_METRICS=off` (no metric counts anything, nothing is",
    "served) and once with metrics on and `/metrics` scraped every second during the measurement, the order alternating",
    "from round to round. Throughput is measured as in the MQTT and gRPC benchmarks (load generator and clients in the",
    "benchmark process), with the CPU the component's process used per message (/proc). Ratios are per round (on against",
    "off, measured one after the other), the median over the rounds.",
    "",
    md,
  ].join("\n");
};

BENCHES["sink"] = async (h) => {
  console.log("sink: TELEMETRY into PostgreSQL against psql \\copy, and the lag at 10 000 msg/s…");
  const md = sinkMarkdown(await benchSink(h));
  console.log(md);
  return [
    "## PostgreSQL sink (issue 12)",
    "",
    `Measured ${new Date().toISOString().slice(0, 10)} on ${machine()}. Rerun: \`npm run bench -- sink\`.`,
    "",
    "The hub (one nats-server), PostgreSQL 15 (a private cluster the harness starts: default settings but fsync and",
    "full_page_writes off, as in the tests) and the sink (in the benchmark's process) share these cores. The anchor loads",
    "the rows the sink wrote, exported to CSV, into a table with the same columns and indexes (not partitioned) with",
    "`psql \\copy`: the database's own bulk path. The CPU columns are each process's CPU time (user + system, from /proc)",
    "during the run divided by the rows; the last column is what the machine's cores would allow at that cost if every",
    "process ran in parallel and never waited: an upper bound of the path, whatever its pipelining.",
    "",
    md,
  ].join("\n");
};

BENCHES["edge"] = async (h) => {
  const r = await benchEdge(h);
  const md = edgeMarkdown(r);
  console.log(md);
  return [
    "## Edge sites (issue 6)",
    "",
    `Measured ${new Date().toISOString().slice(0, 10)} on ${machine()}. Rerun: \`npm run bench -- edge\`.`,
    "",
    "One hub (`fabric up`'s code in the benchmark process, its nats-server on its own) and two sites on the same",
    "machine, each a leaf nats-server in operator mode whose link to the hub goes through a TCP proxy the benchmark",
    "cuts and restores. The fabric's site runs `fabric-edge`'s agent: the hub sources it through the site's durable",
    "consumers with the least-privilege leaf credential. The anchor site is nats-server's default: the hub sources it",
    "through an ephemeral consumer it makes (its leaf credential needs `$JS.FC.>` for that). Backlogs are built",
    "while the link is cut, by a device publishing at the site.",
    "",
    md,
  ].join("\n");
};

BENCHES["mqtt"] = async (h) => {
  console.log("mqtt: publish throughput and ack latency, fabric ingress against nats-server's MQTT listener and Mosquitto…");
  const r = await benchMqtt(h);
  return [
    "## MQTT ingress (issue 3)",
    "",
    `Measured ${new Date().toISOString().slice(0, 10)} on ${machine()}. Rerun: \`npm run bench -- mqtt\`.`,
    "",
    "One load generator (raw sockets, mqtt-packet, MQTT 3.1.1) for every broker, in the benchmark process; each broker",
    "in a process of its own on the same 2 cores (the fabric: nats-server plus `fabric ingress`). 100-byte JSON",
    "telemetry, 4 s per row, a window of unacknowledged publishes per connection (256 in all). QoS 0 rows count",
    "messages written. *every ack stored*: the fabric's TELEMETRY stream grew by exactly the number acknowledged",
    "(for QoS 0, by all that were sent). nats-server's listener acknowledges QoS 1 before storing; Mosquitto keeps",
    "messages in memory.",
    "",
    mqttMarkdown(r),
  ].join("\n");
};

BENCHES["windows"] = async (h) => {
  console.log("windows: events/s through one worker against the raw consume rate…");
  const r = await benchWindows(h);
  console.log(windowsMarkdown(r));
  return [
    "## Windowed aggregation (issue 4)",
    "",
    `Measured ${new Date().toISOString().slice(0, 10)} on ${machine()}. Rerun: \`npm run bench -- windows\`.`,
    "",
    "300 000 readings of 10 000 keys (one a second each in event time) stored in TELEMETRY first; then, in the same",
    "run, a raw callback consume of them, window workers in this process over them, `fabric worker` processes, and",
    "kills. A 10 s window over this input closes one result per key every 10 readings.",
    "",
    windowsMarkdown(r),
  ].join("\n");
};

BENCHES["grpc"] = async (h) => {
  console.log("grpc: Consume with acks through the gateway against a raw nats.js consumer…");
  const r = await benchGrpc(h);
  console.log(grpcMarkdown(r));
  return [
    "## gRPC gateway (issue 5)",
    "",
    `Measured ${new Date().toISOString().slice(0, 10)} on ${machine()}. Rerun: \`npm run bench -- grpc\`.`,
    "",
    "`fabric up` (one node, its gateway in the same process) runs as a process of its own; both consumers run in the",
    "benchmark's process, on the same stream, one after the other, each after a warm-up of 50 000 messages of its own.",
    "",
    grpcMarkdown(r),
  ].join("\n");
};

BENCHES["regions"] = async (h) => {
  const r = await benchRegions(h);
  const md = regionsMarkdown(r);
  console.log(md);
  console.log(
    `regions: copy p99 ${(r.latency.stored.p99 / r.delayMs).toFixed(2)}× the one-way delay; revocation in b p99 ${(r.revocation.warm.remote.p99 / r.delayMs).toFixed(2)}× it ` +
      `with an open pusher (local ${(r.revocation.warm.local.p99 / r.delayMs).toFixed(2)}×), ${(r.revocation.cold.remote.p99 / r.delayMs).toFixed(2)}× with pushAccounts ` +
      `(local ${(r.revocation.cold.local.p99 / r.delayMs).toFixed(2)}×); ${r.cuts.missing} missing, ${r.cuts.duplicates} duplicates`,
  );
  return [
    "## Regions (issue 13)",
    "",
    `Measured ${new Date().toISOString().slice(0, 10)} on ${machine()}. Rerun: \`npm run bench -- regions\`.`,
    "",
    "Two regions on this machine, a and b, each a real hub in a process of its own (`fabric up --region`, its",
    "nats-server a child of it, its own JetStream domain and copy of the operator's keystore; no MQTT, gRPC, window",
    "workers, sinks or status page), linked as an operator links them (`fabric region link b --url` in a, `fabric",
    "region link a` in b; linked when `fabric region ls` says up). a dials b through a TCP proxy, a process of its",
    `own too, that holds every chunk ${REGIONS_DELAY_MS} ms each way: a WAN's one-way delay, the floor of anything crossing.`,
    "The benchmark's process runs only the clients: a service client (credential from a's keystore copy) publishes",
    `events into a's EVENTS at ${REGIONS_RATE.toLocaleString("en-US")}/s (JetStream publishes, each with its own Nats-Msg-Id, at most 2 000 unacknowledged):`,
    `${REGIONS_LATENCY_SECONDS} s with the link up, then ${((REGIONS_CUTS * (REGIONS_CUT_MS + REGIONS_UP_MS) + REGIONS_UP_MS) / 1000).toFixed(1)} s during which the proxy cuts the link ${REGIONS_CUTS} times (${REGIONS_CUT_MS / 1000} s each, ${REGIONS_UP_MS / 1000} s apart).`,
    "An ordered consumer in b reads b's copy `REGION_a_EVENTS`: latency is the copy's own stored timestamp (b's",
    "server) minus the publish time in the payload (same clock); every event id is counted as it arrives. One run.",
    `Then users (${REGIONS_REVOKED} connected to b, ${REGIONS_REVOKED} to a) are revoked one at a time in a's keystore copy (\`revokeUsers\` under`,
    "the keystore's lock, which a's hub shares) and pushed to a's server through one claims pusher kept open; then",
    `${REGIONS_REVOKED} more of each with \`pushAccounts\` as \`fabric-id revoke\` does (a new admin connection and a 150 ms wait`,
    "for the servers' answers to its ping each time: informational). Timed from the start of the revocation to the",
    "user's connection closing. a's hub relays the account update to b, which adopts the revocation and pushes it to",
    "its own server.",
    "",
    md,
  ].join("\n");
};

BENCHES["exchange"] = async (h) => {
  console.log(`exchange: ${EXCHANGE_COUNT} token exchanges against ${EXCHANGE_COUNT} plain issues, ${EXCHANGE_CONCURRENCY.join(" and ")} in flight…`);
  const md = exchangeMarkdown(await benchExchange(h));
  console.log(md);
  return [
    "## Token exchange (issue 14)",
    "",
    `Measured ${new Date().toISOString().slice(0, 10)} on ${machine()}. Rerun: \`npm run bench -- exchange\`.`,
    "",
    "One hub (nats-server, the identity service in the hub's process), a local identity provider (RS256 keys made",
    "with jose, its JWKS served over HTTP on loopback, fetched once). A service client sends each exchange as a",
    "client does: a nonce for the exchange, then the IdP token with the client's public key and its signature over",
    "the nonce; the service checks the nonce (and spends it in KV), the proof, the token against the provider's",
    "keys, maps the claims and issues the credential (keystore lock, user record written). The anchor is what",
    "`fabric-id issue` does for a credential (the same issuance, in process, without the CLI's process start).",
    "Tokens are signed before the clock starts.",
    "",
    md,
  ].join("\n");
};

const wanted = process.argv.slice(2);
const names = wanted.length > 0 ? wanted : Object.keys(BENCHES);
for (const name of names) {
  const bench = BENCHES[name];
  if (bench === undefined) {
    console.error(`unknown benchmark ${name}: ${Object.keys(BENCHES).join(", ")}`);
    process.exit(2);
  }
  const h = new Harness();
  try {
    writeSection(name, await bench(h));
  } finally {
    await h.dispose();
  }
}
console.log("wrote bench/RESULTS.md");
