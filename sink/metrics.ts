import { counter, gauge, histogram } from "../fabric/core/index.js";

/**
 * The sinks' metrics. Rows and batches are counted as they are written; the lag (each consumer's num_pending)
 * and whether the database is up are read from the running sinks at each scrape.
 */

/** What a running sink shows at a scrape. */
export interface SinkMetricsSource {
  readonly sink: string;
  /** Per stream: the consumer's num_pending (undefined when NATS did not answer), and whether this process writes it. */
  lag(): Promise<readonly { stream: string; pending: number | undefined; role: "active" | "standby" }[]>;
  /** False while a write to the database is failing. */
  databaseUp(): boolean;
}

export type SinkRowResult = "written" | "duplicate" | "rejected";
/** `ok`: a batch committed (and acknowledged); `failed`: an attempt that failed and is retried. */
export type SinkBatchResult = "ok" | "failed";

const sources = new Set<SinkMetricsSource>();

type Lag = Awaited<ReturnType<SinkMetricsSource["lag"]>>;
/** A source's lag being read: the gauges collected together in one scrape share one read (each asks JetStream per stream). */
const lagReads = new WeakMap<SinkMetricsSource, Promise<Lag>>();
function lagOf(s: SinkMetricsSource): Promise<Lag> {
  let read = lagReads.get(s);
  if (read === undefined) {
    read = s.lag().catch((): Lag => []).finally(() => lagReads.delete(s));
    lagReads.set(s, read);
  }
  return read;
}

const rows = counter<"sink" | "table" | "result">({
  name: "fabric_sink_rows_total",
  help: "messages a sink handled, by table and result: written (inserted or upserted), duplicate (already in the table: a redelivery), rejected (to REJECTED)",
  labelNames: ["sink", "table", "result"],
});
const batches = counter<"sink" | "stream" | "result">({
  name: "fabric_sink_batches_total",
  help: "batches a sink wrote, by stream and result: ok (committed and acknowledged) or failed (an attempt retried with backoff)",
  labelNames: ["sink", "stream", "result"],
});
const batchSeconds = histogram<"sink" | "stream">({
  name: "fabric_sink_batch_seconds",
  help: "seconds to write one batch into the database (staging COPY, merge, commit), by sink and stream",
  labelNames: ["sink", "stream"],
});

/** A gauge per sink and stream, from each running sink's lag read (undefined: no sample). */
function perStreamGauge(name: string, help: string, value: (l: Lag[number]) => number | undefined): void {
  gauge<"sink" | "stream">({
    name,
    help,
    labelNames: ["sink", "stream"],
    async collect() {
      this.reset();
      const all = await Promise.all([...sources].map(async (s) => ({ sink: s.sink, lag: await lagOf(s) })));
      for (const { sink, lag } of all) {
        for (const l of lag) {
          const v = value(l);
          if (v !== undefined) this.set({ sink, stream: l.stream }, v);
        }
      }
    },
  });
}

perStreamGauge("fabric_sink_lag_messages", "messages of a stream a sink running in this process has not had yet (its durable consumer's num_pending)", (l) => l.pending);
perStreamGauge("fabric_sink_writing", "1 when this process holds a sink's claim on a stream's table and writes it, 0 while it stands by (another process writes)", (l) => (l.role === "active" ? 1 : 0));
gauge<"sink">({
  name: "fabric_sink_database_up",
  help: "1 when a sink running in this process reaches its database, 0 while its connection is lost or writes fail (it claims the table again with backoff)",
  labelNames: ["sink"],
  collect() {
    this.reset();
    for (const s of sources) this.set({ sink: s.sink }, s.databaseUp() ? 1 : 0);
  },
});

export const sinkMetrics = {
  /** A sink reports until the returned function is called. */
  register(source: SinkMetricsSource): () => void {
    sources.add(source);
    return () => {
      sources.delete(source);
    };
  },
  rows(sink: string, table: string, result: SinkRowResult, n: number): void {
    if (n > 0) rows.inc({ sink, table, result }, n);
  },
  batch(sink: string, stream: string, result: SinkBatchResult, seconds?: number): void {
    batches.inc({ sink, stream, result });
    if (seconds !== undefined) batchSeconds.observe({ sink, stream }, seconds);
  },
};
