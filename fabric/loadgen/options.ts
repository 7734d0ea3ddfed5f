import { z } from "zod";

export const BENCH_PATHS = ["nats", "mqtt", "grpc"] as const;
export type BenchPath = (typeof BENCH_PATHS)[number];

/** `fabric bench` options (validated; every loop is bounded by the duration and the outstanding cap). */
export const benchOptionsSchema = z.strictObject({
  connections: z.number().int().min(1).max(1_000).default(4),
  /** Events per second offered, over all connections. */
  rate: z.number().int().min(1).max(1_000_000).default(1_000),
  /** Payload bytes (the JSON reading padded to this size). */
  size: z.number().int().min(64).max(1_048_576).default(100),
  /** MQTT QoS (the NATS path always stores with an ack, gRPC Publish too). */
  qos: z.union([z.literal(0), z.literal(1), z.literal(2)]).default(1),
  durationMs: z.number().int().min(500).max(3_600_000).default(10_000),
  /** gRPC call compression (grpc-js has gzip and deflate; not zstd); for MQTT and NATS gzip payloads (Content-Encoding). */
  compression: z.enum(["none", "gzip", "deflate"]).default("none"),
  /** Readings a connection publishes back to back before it waits for their acknowledgements. */
  batch: z.number().int().min(1).max(10_000).default(500),
});
export type BenchOptions = z.output<typeof benchOptionsSchema>;
export type BenchOptionsInput = z.input<typeof benchOptionsSchema>;

export interface BenchTargets {
  /** NATS URLs of the fabric (the consumer side of every path, and the NATS path's publishers). */
  servers: string[];
  /** mqtt://host:port of the fabric's MQTT ingress. */
  mqtt?: string | undefined;
  /** host:port of the fabric's gRPC gateway. */
  grpc?: string | undefined;
  /** A service credential (.creds text): publishers and the consumer connect with it. */
  creds: string;
}

/** Loopback only, unless the operator says the target is theirs: a load generator must not be pointed at others. */
export function assertTargetAllowed(targets: BenchTargets, targetIsMine: boolean): void {
  if (targetIsMine) return;
  const hosts = [...targets.servers, targets.mqtt ?? "", targets.grpc === undefined ? "" : `grpc://${targets.grpc}`].filter((u) => u !== "").map((u) => {
    try {
      return new URL(u.includes("://") ? u : `nats://${u}`).hostname.replace(/^\[|\]$/g, "");
    } catch {
      return u;
    }
  });
  const remote = hosts.filter((h) => !["127.0.0.1", "localhost", "::1"].includes(h));
  if (remote.length > 0) throw new Error(`${remote.join(", ")} is not loopback: give --target-is-mine when the fabric there is yours`);
}
