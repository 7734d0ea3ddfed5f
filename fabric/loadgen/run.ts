import { randomBytes } from "node:crypto";
import { setTimeout as delay } from "node:timers/promises";
import { jetstreamManager } from "@nats-io/jetstream";
import { errorMessage, messagePayload, pollUntil } from "../core/index.js";
import { connectWithCreds } from "../../identity/index.js";
import { cpuMs, localFabricProcesses } from "./cpu.js";
import type { BenchOptions, BenchPath, BenchTargets } from "./options.js";
import { openPublisher, type Publisher } from "./publishers.js";
import { hostPort, startCountingRelay } from "./counting-relay.js";

export interface BenchResult {
  path: BenchPath;
  connections: number;
  rate: number;
  size: number;
  qos: number;
  compression: string;
  durationMs: number;
  /** Publishes started, acknowledged by the path, failed. */
  sent: number;
  acked: number;
  failed: number;
  /** Readings the consumer received, and that TELEMETRY holds. */
  delivered: number;
  stored: number;
  offeredPerSecond: number;
  storedPerSecond: number;
  /** Publish → consumer (a live subscription), ms; undefined when nothing arrived. */
  latencyMs: { p50: number; p90: number; p99: number; max: number } | undefined;
  /** The fabric's processes on this machine: CPU ms per 1 000 readings stored, and per connection. */
  cpu: { what: string; pid: number; msPer1000: number; msPerConnection: number }[];
  /** Per second of the run: readings delivered and their p99 latency (ms). */
  timeline: { second: number; delivered: number; p99: number }[];
  /** Bytes the publishers sent per reading, counted on the wire (a relay on loopback in front of the target). */
  wireBytesPerReading: number;
  batch: number;
  /** The first errors, for the report. */
  errors: string[];
}

const percentile = (sorted: readonly number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? Number.NaN;

/**
 * One run of `fabric bench <path>`: `connections` publishers offer `rate` readings a second of `size` bytes for
 * the duration (each connection at most `batch` unacknowledged), under `telemetry.bench-<run>.c<i>.m`; a live subscription
 * measures publish → delivery; TELEMETRY's count gives what was stored; the run's subjects are purged after.
 */
export async function runBench(path: BenchPath, targets: BenchTargets, o: BenchOptions, progress: (line: string) => void = () => undefined): Promise<BenchResult> {
  const run = `bench-${randomBytes(3).toString("hex")}`;
  const consumer = await connectWithCreds(targets.creds, { servers: targets.servers, name: "fabric bench consumer" });
  const latencies: number[] = [];
  const perSecond = new Map<number, number[]>();
  const errors: string[] = [];
  let delivered = 0;
  const start = Date.now();
  consumer.subscribe(`telemetry.${run}.>`, {
    callback: (_e, m) => {
      const now = Date.now();
      delivered++;
      try {
        const ts = (JSON.parse(Buffer.from(messagePayload(m)).toString("utf8")) as { ts?: number }).ts;
        if (typeof ts !== "number") return;
        const l = now - ts;
        latencies.push(l);
        const s = Math.floor((now - start) / 1000);
        (perSecond.get(s) ?? perSecond.set(s, []).get(s))?.push(l);
      } catch {
        // not a reading of ours
      }
    },
  });
  await consumer.flush();
  const publishers: Publisher[] = [];
  // the publishers go through a counting relay: the bytes on the wire of every path alike
  const target = path === "nats" ? hostPort(targets.servers[0] ?? "", 4222) : path === "mqtt" ? hostPort(targets.mqtt ?? "", 1883) : hostPort(targets.grpc ?? "", 50051);
  const relay = await startCountingRelay(target.host, target.port);
  const via: BenchTargets =
    path === "nats" ? { ...targets, servers: [`nats://${relay.address}`] } : path === "mqtt" ? { ...targets, mqtt: `mqtt://${relay.address}` } : { ...targets, grpc: relay.address };
  try {
    for (let i = 0; i < o.connections; i++) publishers.push(await openPublisher(path, i, via, o));
    const processes = localFabricProcesses();
    const bytesBefore = relay.bytesUp();
    const cpuBefore = new Map(processes.map((p) => [p.pid, cpuMs(p.pid) ?? 0]));
    const pad = (n: number): string => "x".repeat(Math.max(0, n));
    let sent = 0;
    let acked = 0;
    let failed = 0;
    let outstanding = 0;
    const inFlight = new Array<number>(o.connections).fill(0);
    const t0 = Date.now();
    let nextProgress = t0 + 1_000;
    while (Date.now() - t0 < o.durationMs) {
      const due = Math.floor((o.rate * (Date.now() - t0)) / 1000);
      while (sent < due) {
        const i = sent % o.connections;
        // a connection waits once `batch` of its readings are unacknowledged
        if ((inFlight[i] ?? 0) >= o.batch) break;
        inFlight[i] = (inFlight[i] ?? 0) + 1;
        const body = JSON.stringify({ value: sent, ts: Date.now(), pad: "" });
        const payload = Buffer.from(body.replace('"pad":""', `"pad":"${pad(o.size - body.length)}"`));
        outstanding++;
        sent++;
        publishers[i]?.publish(`telemetry.${run}.c${i}.m`, payload).then(
          () => {
            acked++;
            outstanding--;
            inFlight[i] = (inFlight[i] ?? 1) - 1;
          },
          (err: unknown) => {
            failed++;
            outstanding--;
            inFlight[i] = (inFlight[i] ?? 1) - 1;
            if (errors.length < 5) errors.push(errorMessage(err));
          },
        );
      }
      if (Date.now() >= nextProgress) {
        nextProgress += 1_000;
        const sorted = [...latencies].sort((a, b) => a - b);
        progress(`${path}: ${Math.round((Date.now() - t0) / 1000)} s, ${sent} sent, ${acked} acknowledged, ${delivered} delivered, p99 ${sorted.length === 0 ? "-" : percentile(sorted, 99).toFixed(1)} ms`);
      }
      await delay(2);
    }
    const elapsedMs = Date.now() - t0;
    // what is still in flight settles (bounded)
    await pollUntil(() => outstanding === 0, { timeoutMs: 10_000, intervalMs: 20 }).catch(() => undefined);
    const jsm = await jetstreamManager(consumer);
    const storedNow = async (): Promise<number> => {
      const si = await jsm.streams.info("TELEMETRY", { subjects_filter: `telemetry.${run}.>` });
      return Object.values(si.state.subjects ?? {}).reduce((a, b) => a + b, 0);
    };
    let stored = await storedNow();
    await pollUntil(async () => {
      const n = await storedNow();
      const steady = n === stored && (n >= acked || delivered >= sent);
      stored = n;
      return steady;
    }, { timeoutMs: 5_000, intervalMs: 250 }).catch(() => undefined);
    const cpu = processes.flatMap((p) => {
      const after = cpuMs(p.pid);
      if (after === undefined) return [];
      const used = after - (cpuBefore.get(p.pid) ?? after);
      return [{ what: p.what, pid: p.pid, msPer1000: stored === 0 ? 0 : (used * 1000) / stored, msPerConnection: used / o.connections }];
    });
    await jsm.streams.purge("TELEMETRY", { filter: `telemetry.${run}.>` }).catch(() => undefined);
    const wire = relay.bytesUp() - bytesBefore;
    const sorted = latencies.sort((a, b) => a - b);
    return {
      path,
      connections: o.connections,
      rate: o.rate,
      size: o.size,
      qos: path === "mqtt" ? o.qos : 1,
      compression: o.compression,
      durationMs: elapsedMs,
      sent,
      acked,
      failed,
      delivered,
      stored,
      offeredPerSecond: (sent * 1000) / elapsedMs,
      storedPerSecond: (stored * 1000) / elapsedMs,
      latencyMs: sorted.length === 0 ? undefined : { p50: percentile(sorted, 50), p90: percentile(sorted, 90), p99: percentile(sorted, 99), max: sorted[sorted.length - 1] ?? 0 },
      cpu,
      wireBytesPerReading: sent === 0 ? 0 : wire / sent,
      batch: o.batch,
      timeline: [...perSecond.entries()].sort(([a], [b]) => a - b).map(([second, l]) => ({ second, delivered: l.length, p99: percentile(l.sort((a, b) => a - b), 99) })),
      errors,
    };
  } finally {
    for (const p of publishers) await p.close().catch(() => undefined);
    await relay.close();
    await consumer.close();
  }
}
