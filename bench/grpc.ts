import { AckPolicy, jetstream, jetstreamManager, type JsMsg } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { JetStreamPublisher, pollUntil } from "../fabric/core/index.js";
import { ConsumerServiceClient, ConsumerServiceService, FlowControl, Settlement_Kind, type ConsumeResponse } from "../proto/gen/fabric/v1/consumer.js";
import { readFileSync } from "node:fs";
import { credentials } from "@grpc/grpc-js";
import { authFor, connectAs, startCli, type Harness } from "../test/harness/index.js";
import { childPids, cpuDuring, fmt, percentile } from "./lib.js";

const MESSAGES = 200_000;
const WARM_UP = 50_000;
const PAYLOAD = 100;
const CREDIT = 10_000;
const CLIENT_WINDOW_BYTES = 8 * 1024 * 1024;
const LATENCY_RATE = 10_000;
const LATENCY_SECONDS = 5;

export interface GrpcBench {
  raw: number;
  gateway: number;
  rawLatency: { p50: number; p99: number };
  gatewayLatency: { p50: number; p99: number };
  /** CPU µs per message of each process during the raw and the gateway runs. */
  rawCpu: Record<string, number>;
  gatewayCpu: Record<string, number>;
}

/** 100-byte payloads carrying their send time (performance.timeOrigin + now, ms) in the first bytes. */
function payload(): Buffer {
  const b = Buffer.alloc(PAYLOAD, 32);
  b.write(String(performance.timeOrigin + performance.now()));
  return b;
}
const sentAt = (data: Uint8Array): number => Number(Buffer.from(data.subarray(0, 24)).toString().trim());

export async function publishAll(nc: NatsConnection, subject: string, count: number): Promise<void> {
  const pub = new JetStreamPublisher(nc);
  const batch: Promise<unknown>[] = [];
  for (let i = 0; i < count; i++) {
    batch.push(pub.publish(subject, payload()));
    if (batch.length >= 2_048) await Promise.all(batch.splice(0));
  }
  await Promise.all(batch);
  pub.close();
}

/** Publishes at `rate` msg/s for `seconds`, in 10 ms ticks. */
async function publishPaced(nc: NatsConnection, subject: string, rate: number, seconds: number): Promise<void> {
  const pub = new JetStreamPublisher(nc);
  const start = performance.now();
  const all: Promise<unknown>[] = [];
  for (let tick = 0; tick < seconds * 100; tick++) {
    for (let i = 0; i < rate / 100; i++) all.push(pub.publish(subject, payload()));
    const ahead = start + (tick + 1) * 10 - performance.now();
    if (ahead > 0) await new Promise((r) => setTimeout(r, ahead));
  }
  await Promise.all(all);
  pub.close();
}

/** A raw nats.js callback consume of a durable with an ack per message; latencies of the messages' send times. */
async function rawConsume(nc: NatsConnection, subject: string, count: number, latencies?: number[]): Promise<number> {
  const jsm = await jetstreamManager(nc);
  const name = `raw-${Math.round(performance.now())}`;
  await jsm.consumers.add("TELEMETRY", { durable_name: name, ack_policy: AckPolicy.Explicit, filter_subject: subject, max_ack_pending: 10_000 });
  const c = await jetstream(nc).consumers.get("TELEMETRY", name);
  let n = 0;
  const t0 = performance.now();
  const msgs = await c.consume({
    max_messages: CREDIT,
    callback: (m: JsMsg) => {
      latencies?.push(performance.timeOrigin + performance.now() - sentAt(m.data));
      m.ack();
      n++;
    },
  });
  await pollUntil(() => n >= count || undefined, { intervalMs: 2, timeoutMs: 300_000, what: "the raw consume" });
  const rate = (count * 1000) / (performance.now() - t0);
  await msgs.close();
  return rate;
}

/** The gateway's Consume with a durable: CREDIT credits, topped up as deliveries are acked. */
export async function gatewayConsume(port: number, creds: string, subject: string, count: number, latencies?: number[]): Promise<number> {
  // HTTP/2's default 64 KiB receive window holds ~400 deliveries: a consumer wants more in flight than that
  const client = new ConsumerServiceClient(`127.0.0.1:${port}`, credentials.createInsecure(), { "grpc-node.flow_control_window": CLIENT_WINDOW_BYTES });
  const call = client.consume(authFor(creds, ConsumerServiceService.consume.path));
  let n = 0;
  let unreported = 0;
  let failure: Error | undefined;
  const t0 = performance.now();
  call.on("data", (r: ConsumeResponse) => {
    if (r.frame?.$case !== "deliveries") return;
    const ds = r.frame.value.deliveries;
    const now = performance.timeOrigin + performance.now();
    if (latencies !== undefined) for (const d of ds) latencies.push(now - sentAt(d.event?.data ?? new Uint8Array()));
    // each batch processed, then acked in one frame
    call.write({ frame: { $case: "settle", value: { settlements: ds.map((d) => ({ ackToken: d.ackToken, kind: Settlement_Kind.KIND_ACK, delayMs: 0 })) } } });
    n += ds.length;
    // credit back in batches, as a client that processes as it goes would
    unreported += ds.length;
    if (unreported >= CREDIT / 4) {
      call.write({ frame: { $case: "credit", value: { messages: unreported, bytes: 0 } } });
      unreported = 0;
    }
  });
  call.on("error", (e: Error) => (failure = e));
  call.write({ frame: { $case: "open", value: { stream: "TELEMETRY", durable: `gw-${Math.round(performance.now())}`, filterSubjects: [subject], maxMessagesInFlight: 10_000, maxBytesInFlight: 0, ackWaitMs: 30_000, flowControl: FlowControl.FLOW_CONTROL_CREDITS, maxLeaseExtensionMs: 0, maxDeliveries: 0 } } });
  call.write({ frame: { $case: "credit", value: { messages: CREDIT, bytes: 0 } } });
  await pollUntil(() => (failure !== undefined ? Promise.reject(failure) : n >= count || undefined), { intervalMs: 2, timeoutMs: 300_000, what: "the gateway consume" });
  const rate = (count * 1000) / (performance.now() - t0);
  call.end();
  client.close();
  return rate;
}

/** Consume with acks through the gateway against a raw nats.js consumer of the same stream, same run. */
export async function benchGrpc(h: Harness): Promise<GrpcBench> {
  // the hub and its gateway as `fabric up` runs them, in a process of their own; the clients here
  const home = h.tempDir("fabric-bench-grpc-");
  const up = startCli("fabric", ["up", "--host", "127.0.0.1", "--port", "0", "--monitor-port", "0", "--leaf-port", "0", "--no-mqtt", "--no-windows", "--grpc-port", "0", "--no-status-page", "--json"], { env: { FABRIC_HOME: home, FABRIC_LOG_LEVEL: "warn" } });
  h.defer(async () => void (await up.signal("SIGINT")));
  const ready = await up.json<{ urls: string[]; grpc: number; devCreds: string }>();
  const creds = readFileSync(ready.devCreds, "utf8");
  const nc = await connectAs(ready.urls, creds);
  const port = ready.grpc;
  // a warm-up of both paths first (JIT, connections), on messages of their own
  await publishAll(nc, "telemetry.bench.d0.warm", WARM_UP);
  await rawConsume(nc, "telemetry.bench.d0.warm", WARM_UP);
  await gatewayConsume(port, creds, "telemetry.bench.d0.warm", WARM_UP);
  await publishAll(nc, "telemetry.bench.d1.load", MESSAGES);
  // CPU per message of each process: on 2 cores, the gateway path runs three busy processes, the raw path two
  const pids = { "nats-server": childPids(up.pid)[0] ?? -1, gateway: up.pid, client: process.pid };
  const perMsg = (cpuMs: Record<string, number>): Record<string, number> => Object.fromEntries(Object.entries(cpuMs).map(([k, ms]) => [k, (ms * 1000) / MESSAGES]));
  const rawRun = await cpuDuring(pids, () => rawConsume(nc, "telemetry.bench.d1.load", MESSAGES));
  const gatewayRun = await cpuDuring(pids, () => gatewayConsume(port, creds, "telemetry.bench.d1.load", MESSAGES));
  const raw = rawRun.result;
  const gateway = gatewayRun.result;

  // latency at 10 000 msg/s, each consumer on its own subject while the messages are published
  const rawLat: number[] = [];
  const rawDone = rawConsume(nc, "telemetry.bench.d2.live", LATENCY_RATE * LATENCY_SECONDS, rawLat);
  await publishPaced(nc, "telemetry.bench.d2.live", LATENCY_RATE, LATENCY_SECONDS);
  await rawDone;
  const gwLat: number[] = [];
  const gwDone = gatewayConsume(port, creds, "telemetry.bench.d3.live", LATENCY_RATE * LATENCY_SECONDS, gwLat);
  await publishPaced(nc, "telemetry.bench.d3.live", LATENCY_RATE, LATENCY_SECONDS);
  await gwDone;
  await nc.close();
  const lat = (xs: number[]): { p50: number; p99: number } => ({ p50: percentile(xs, 50), p99: percentile(xs, 99) });
  return { raw, gateway, rawLatency: lat(rawLat), gatewayLatency: lat(gwLat), rawCpu: perMsg(rawRun.cpuMs), gatewayCpu: perMsg(gatewayRun.cpuMs) };
}

const cpuLine = (cpu: Record<string, number>): string => Object.entries(cpu).map(([k, us]) => `${k} ${fmt(us, 1)}`).join(", ");

export function grpcMarkdown(r: GrpcBench): string {
  const ok = r.gateway >= 0.5 * r.raw && r.gateway >= 80_000;
  return [
    `| path (${fmt(MESSAGES)} stored messages of ${PAYLOAD} bytes, an ack for each) | msg/s | vs raw | p50 ms at 10 000 msg/s | p99 ms at 10 000 msg/s |`,
    "| --- | ---: | ---: | ---: | ---: |",
    `| raw nats.js JetStream consume (callback, explicit ack per message) | ${fmt(r.raw)} | 1× | ${fmt(r.rawLatency.p50, 2)} | ${fmt(r.rawLatency.p99, 2)} |`,
    `| gRPC gateway Consume (credits ${fmt(CREDIT)}, topped up every ${fmt(CREDIT / 4)}; an ack settlement per delivery) | ${fmt(r.gateway)} | ${fmt(r.gateway / r.raw, 2)}× | ${fmt(r.gatewayLatency.p50, 2)} | ${fmt(r.gatewayLatency.p99, 2)} |`,
    "",
    `CPU µs per message (user + system): raw run ${cpuLine(r.rawCpu)}; gateway run ${cpuLine(r.gatewayCpu)}.`,
    "",
    `Goal (issue 5: at least 50 % of raw and 80 000 msg/s): ${ok ? "**met**" : "**not met**"}. Latency: publish → the consumer's callback, at ${fmt(LATENCY_RATE)} msg/s for ${LATENCY_SECONDS} s.`,
  ].join("\n");
}
