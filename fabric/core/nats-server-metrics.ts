import { z } from "zod";
import type { Counter, Gauge } from "prom-client";
import { counter, gauge } from "./metrics.js";
import { ScrapeSnapshot } from "./scrape-snapshot.js";

/**
 * The figures of the nats-servers this process runs (the hub's nodes, an edge's leaf), read from their
 * monitoring endpoints at scrape time, so one scrape of the fabric's `/metrics` sees the servers too
 * (nats-server's own monitoring is JSON, not Prometheus format). Each scrape reads `/varz` and
 * `/jsz?accounts=true&streams=true&consumers=true` of every server once, with a short timeout; a server that
 * does not answer has `nats_server_up 0` and no other figures in that scrape.
 */

/** How long one monitoring request may take during a scrape. */
export const NATS_MONITOR_TIMEOUT_MS = 1_000; // 1 s

export interface MonitoredServer {
  /** The server's name, the `server` label. */
  name: string;
  /** Its monitoring port (looked up at each scrape: a restarted server may have another). */
  port: number;
  /** Where it listens for monitoring: 127.0.0.1 (a server of this process) unless given. */
  host?: string;
}

const varzSchema = z.looseObject({
  connections: z.number(),
  leafnodes: z.number().optional(),
  mem: z.number(),
  in_msgs: z.number(),
  out_msgs: z.number(),
  in_bytes: z.number(),
  out_bytes: z.number(),
  slow_consumers: z.number().optional(),
});

const consumerSchema = z.looseObject({
  name: z.string(),
  num_pending: z.number().optional(),
  num_ack_pending: z.number().optional(),
  num_redelivered: z.number().optional(),
});
const streamSchema = z.looseObject({
  name: z.string(),
  state: z.looseObject({ messages: z.number(), bytes: z.number() }),
  consumer_detail: z.array(consumerSchema).nullish(),
});
const jszSchema = z.looseObject({
  streams: z.number().optional(),
  consumers: z.number().optional(),
  storage: z.number().optional(),
  memory: z.number().optional(),
  account_details: z.array(z.looseObject({ name: z.string(), stream_detail: z.array(streamSchema).nullish() })).nullish(),
});

interface ServerReading {
  server: string;
  varz?: z.infer<typeof varzSchema>;
  jsz?: z.infer<typeof jszSchema>;
}


async function fetchJson<S extends z.ZodType>(s: MonitoredServer, path: string, schema: S): Promise<z.infer<S> | undefined> {
  const host = s.host ?? "127.0.0.1";
  try {
    const res = await fetch(`http://${host.includes(":") ? `[${host}]` : host}:${s.port}${path}`, { signal: AbortSignal.timeout(NATS_MONITOR_TIMEOUT_MS) });
    if (!res.ok) return undefined;
    const parsed = schema.safeParse(await res.json());
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

async function read(s: MonitoredServer): Promise<ServerReading> {
  if (s.port <= 0) return { server: s.name };
  const [varz, jsz] = await Promise.all([fetchJson(s, "/varz", varzSchema), fetchJson(s, "/jsz?accounts=true&streams=true&consumers=true", jszSchema)]);
  return { server: s.name, ...(varz === undefined ? {} : { varz }), ...(jsz === undefined ? {} : { jsz }) };
}

/** Every monitored server's reading, once per scrape (each list is read then: a restarted server may have moved). */
const snapshot = new ScrapeSnapshot<() => readonly MonitoredServer[], ServerReading>((lists) => Promise.all(lists.flatMap((f) => f()).map(read)));
const readings = (): Promise<ServerReading[]> => snapshot.readings();

type Setter<L extends string> = (set: (labels: Partial<Record<L, string>>, value: number) => void, r: ServerReading) => void;

/** A gauge set from the readings at each scrape (its old label sets dropped first). */
function serverGauge<L extends string>(name: string, help: string, labelNames: readonly L[], fill: Setter<L>): Gauge<L> {
  return gauge<L>({
    name,
    help,
    labelNames,
    async collect() {
      const all = await readings();
      this.reset();
      for (const r of all) fill((labels, v) => this.set(labels, v), r);
    },
  });
}

/** A counter taken from a server's own running total at each scrape. */
function serverCounter(name: string, help: string, pick: (v: z.infer<typeof varzSchema>) => number): Counter<"server"> {
  return counter<"server">({
    name,
    help,
    labelNames: ["server"],
    async collect() {
      const all = await readings();
      this.reset();
      for (const r of all) if (r.varz !== undefined) this.inc({ server: r.server }, pick(r.varz));
    },
  });
}

let declared = false;

/** Declares the nats-server metrics (once per process). */
export function declareNatsServerMetrics(): void {
  if (declared) return;
  declared = true;
  serverGauge("nats_server_up", "1 when the server's monitoring endpoint answered this scrape, else 0", ["server"], (set, r) => set({ server: r.server }, r.varz === undefined ? 0 : 1));
  serverGauge("nats_server_connections", "client connections open on the server", ["server"], (set, r) => {
    if (r.varz !== undefined) set({ server: r.server }, r.varz.connections);
  });
  serverGauge("nats_server_leafnodes", "leaf node connections of the server", ["server"], (set, r) => {
    if (r.varz !== undefined) set({ server: r.server }, r.varz.leafnodes ?? 0);
  });
  serverGauge("nats_server_memory_bytes", "resident memory of the nats-server process", ["server"], (set, r) => {
    if (r.varz !== undefined) set({ server: r.server }, r.varz.mem);
  });
  serverCounter("nats_server_received_messages_total", "messages the server received from clients, routes and leaf nodes", (v) => v.in_msgs);
  serverCounter("nats_server_sent_messages_total", "messages the server sent", (v) => v.out_msgs);
  serverCounter("nats_server_received_bytes_total", "bytes the server received", (v) => v.in_bytes);
  serverCounter("nats_server_sent_bytes_total", "bytes the server sent", (v) => v.out_bytes);
  serverGauge("nats_jetstream_streams", "JetStream streams on the server", ["server"], (set, r) => {
    if (r.jsz !== undefined) set({ server: r.server }, r.jsz.streams ?? 0);
  });
  serverGauge("nats_jetstream_consumers", "JetStream consumers on the server", ["server"], (set, r) => {
    if (r.jsz !== undefined) set({ server: r.server }, r.jsz.consumers ?? 0);
  });
  serverGauge("nats_jetstream_storage_bytes", "JetStream file storage used on the server", ["server"], (set, r) => {
    if (r.jsz !== undefined) set({ server: r.server }, r.jsz.storage ?? 0);
  });
  const eachStream = (r: ServerReading, f: (account: string, s: z.infer<typeof streamSchema>) => void): void => {
    for (const a of r.jsz?.account_details ?? []) for (const s of a.stream_detail ?? []) f(a.name, s);
  };
  serverGauge("nats_jetstream_stream_messages", "messages stored in the stream (as this server holds it)", ["server", "account", "stream"], (set, r) =>
    eachStream(r, (account, s) => set({ server: r.server, account, stream: s.name }, s.state.messages)),
  );
  serverGauge("nats_jetstream_stream_bytes", "bytes stored in the stream", ["server", "account", "stream"], (set, r) =>
    eachStream(r, (account, s) => set({ server: r.server, account, stream: s.name }, s.state.bytes)),
  );
  const consumerGauge = (name: string, help: string, pick: (c: z.infer<typeof consumerSchema>) => number | undefined): void => {
    serverGauge(name, help, ["server", "account", "stream", "consumer"], (set, r) =>
      eachStream(r, (account, s) => {
        for (const c of s.consumer_detail ?? []) set({ server: r.server, account, stream: s.name, consumer: c.name }, pick(c) ?? 0);
      }),
    );
  };
  consumerGauge("nats_jetstream_consumer_num_pending", "messages of the stream the consumer has not delivered yet (its lag)", (c) => c.num_pending);
  consumerGauge("nats_jetstream_consumer_num_ack_pending", "messages the consumer delivered that are not acknowledged yet", (c) => c.num_ack_pending);
  consumerGauge("nats_jetstream_consumer_num_redelivered", "messages the consumer redelivered and are not acknowledged yet", (c) => c.num_redelivered);
}

/**
 * Reports the servers `list` names (read at each scrape) in this process's metrics until the returned function
 * is called.
 */
export function monitorNatsServers(list: () => readonly MonitoredServer[]): () => void {
  declareNatsServerMetrics();
  return snapshot.add(list);
}
