import { setTimeout as delay } from "node:timers/promises";
import { AckPolicy, DeliverPolicy, jetstream, type Consumer, type JetStreamManager, type JsMsg } from "@nats-io/jetstream";
import { headers as natsHeaders, nanos, type NatsConnection } from "@nats-io/transport-node";
import { errorMessage, resetConsumer, secondsSince, type JetStreamPublisher, type Logger } from "../fabric/core/index.js";
import { REJECT_REASON_HEADER } from "../streams/index.js";
import { SinkError } from "./errors.js";
import { sinkMetrics } from "./metrics.js";
import type { PostgresSinkConfig } from "./options.js";
import type { TableSpec } from "./table-spec.js";
import { TableWriter, type Row } from "./table-writer.js";

export interface StreamSinkStatus {
  stream: string;
  table: string;
  consumer: string;
  /** Messages of the stream the sink has not had yet (the consumer's num_pending); undefined when NATS did not answer. */
  pending: number | undefined;
  /** Messages fetched and not yet acknowledged (being written, or waiting for the database). */
  ackPending: number | undefined;
  /** Rows committed (re-deliveries the unique key dropped included) and messages sent to REJECTED, by this process. */
  written: number;
  rejected: number;
  database: "up" | "down";
  /** The last failure while the database is down. */
  lastError: string | undefined;
  /** When the last batch was committed (ISO time), by this process. */
  lastBatchAt: string | undefined;
}

export const consumerName = (config: Pick<PostgresSinkConfig, "name">, spec: TableSpec): string => `sink-${config.name}-${spec.stream}`;

/**
 * One stream into its table: a durable pull consumer fetches batches, each is written in one transaction, and
 * its messages are acknowledged only after COMMIT (and after the refused ones are stored in REJECTED). While the
 * database fails, the batch is retried with exponential backoff and nothing more is fetched (the consumer holds
 * the backlog); the messages held are kept from redelivery with in-progress acks.
 */
export class StreamSink {
  private readonly writer: TableWriter;
  private readonly abort = new AbortController();
  private consumer: Consumer | undefined;
  private done: Promise<void> = Promise.resolve();
  private written = 0;
  private rejected = 0;
  private down = false;
  private lastError: string | undefined;
  private lastBatchAt: string | undefined;
  private readonly table: string;
  readonly consumerName: string;

  constructor(
    private readonly nc: NatsConnection,
    private readonly jsm: JetStreamManager,
    private readonly publisher: JetStreamPublisher,
    private readonly config: PostgresSinkConfig,
    private readonly spec: TableSpec,
    private readonly logger: Logger,
  ) {
    this.writer = new TableWriter(config, spec, logger);
    this.consumerName = consumerName(config, spec);
    this.table = `${config.tablePrefix}${spec.stream}`;
  }

  /** False while a write is failing (retried with backoff). */
  get databaseUp(): boolean {
    return !this.down;
  }

  get partitions(): TableWriter["partitions"] {
    return this.writer.partitions;
  }

  async start(): Promise<void> {
    const name = this.consumerName;
    const existing = await this.jsm.consumers.info(this.spec.jsStream, name).catch(() => undefined);
    await this.jsm.consumers.add(this.spec.jsStream, {
      durable_name: name,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      ack_wait: nanos(this.config.ackWaitMs),
      max_ack_pending: this.config.maxBatch * 2,
      description: `fabric sink ${this.config.name}: ${this.spec.jsStream} into PostgreSQL`,
    });
    // a crashed run's fetched, unacknowledged messages come again at once, not after ack_wait
    if (existing !== undefined && existing.num_ack_pending > 0) await resetConsumer(this.nc, { api: "$JS.API", stream: this.spec.jsStream, consumer: name });
    this.consumer = await jetstream(this.nc).consumers.get(this.spec.jsStream, name);
    this.done = this.loop();
  }

  private async loop(): Promise<void> {
    let backoff = this.config.retryMinMs;
    while (!this.abort.signal.aborted) {
      let batch: JsMsg[];
      try {
        batch = await this.fetch();
        backoff = this.config.retryMinMs;
      } catch (err) {
        if (this.abort.signal.aborted) break;
        this.logger.warn({ stream: this.spec.jsStream, err: errorMessage(err) }, "sink: fetch failed; retrying");
        await this.sleep(backoff);
        backoff = Math.min(backoff * 2, this.config.retryMaxMs);
        continue;
      }
      if (batch.length === 0) continue;
      try {
        await this.handle(batch);
      } catch (err) {
        if (err instanceof SinkError && err.code === "FABRIC_ERR_SINK_STOPPED") break;
        throw err;
      }
    }
  }

  private async fetch(): Promise<JsMsg[]> {
    if (this.consumer === undefined) throw new SinkError("FABRIC_ERR_SINK_CONSUMER", "not started");
    const out: JsMsg[] = [];
    for await (const m of await this.consumer.fetch({ max_messages: this.config.maxBatch, expires: this.config.fetchExpiresMs })) out.push(m);
    return out;
  }

  private async handle(batch: readonly JsMsg[]): Promise<void> {
    const rows: Row[] = [];
    const rowMsgs: JsMsg[] = [];
    const rejects: { m: JsMsg; reason: string }[] = [];
    for (const m of batch) {
      const p = this.spec.parse(m);
      if ("reject" in p) rejects.push({ m, reason: p.reject });
      else {
        rows.push(p);
        rowMsgs.push(m);
      }
    }
    const { inserted, refused } = await this.retrying(
      "write to postgres",
      async () => {
        const start = performance.now();
        const r = await this.writer.write(rows);
        sinkMetrics.batch(this.config.name, this.spec.jsStream, "ok", secondsSince(start));
        return r;
      },
      batch,
    );
    for (const r of refused) {
      const m = rowMsgs[r.index];
      if (m !== undefined) rejects.push({ m, reason: `sink: postgres refused the row: ${r.message}` });
    }
    if (rejects.length > 0) await this.retrying("store rejected messages", () => Promise.all(rejects.map((r) => this.reject(r.m, r.reason))), batch);
    for (const m of batch) m.ack();
    this.written += rows.length - refused.length;
    this.rejected += rejects.length;
    this.lastBatchAt = new Date().toISOString();
    sinkMetrics.rows(this.config.name, this.table, "written", inserted);
    sinkMetrics.rows(this.config.name, this.table, "duplicate", rows.length - refused.length - inserted);
    sinkMetrics.rows(this.config.name, this.table, "rejected", rejects.length);
  }

  private reject(m: JsMsg, reason: string): Promise<unknown> {
    const h = natsHeaders();
    h.set(REJECT_REASON_HEADER, reason);
    return this.publisher.publish(`rejected.${m.subject}`, m.data, { msgId: `sink:${this.config.name}:${this.spec.stream}:${m.seq}`, headers: h });
  }

  /** Runs `fn` until it succeeds, backing off exponentially; the batch's messages are kept in progress meanwhile. */
  private async retrying<T>(what: string, fn: () => Promise<T>, batch: readonly JsMsg[]): Promise<T> {
    let backoff = this.config.retryMinMs;
    for (let attempt = 1; ; attempt++) {
      try {
        const r = await fn();
        if (this.down) this.logger.info({ stream: this.spec.jsStream, attempts: attempt }, `sink: ${what} works again; draining the backlog`);
        this.down = false;
        this.lastError = undefined;
        return r;
      } catch (err) {
        this.down = true;
        this.lastError = errorMessage(err);
        sinkMetrics.batch(this.config.name, this.spec.jsStream, "failed");
        this.logger.warn({ stream: this.spec.jsStream, attempt, retryInMs: backoff, err: this.lastError }, `sink: ${what} failed; retrying`);
        for (const m of batch) m.working();
        await this.sleep(backoff);
        if (this.abort.signal.aborted) throw new SinkError("FABRIC_ERR_SINK_STOPPED", "the sink stopped while retrying", { cause: err });
        backoff = Math.min(backoff * 2, this.config.retryMaxMs);
      }
    }
  }

  private async sleep(ms: number): Promise<void> {
    await delay(ms, undefined, { signal: this.abort.signal }).catch(() => undefined);
  }

  async status(): Promise<StreamSinkStatus> {
    const info = await this.jsm.consumers.info(this.spec.jsStream, this.consumerName).catch(() => undefined);
    return {
      stream: this.spec.jsStream,
      table: this.table,
      consumer: this.consumerName,
      pending: info?.num_pending,
      ackPending: info?.num_ack_pending,
      written: this.written,
      rejected: this.rejected,
      database: this.down ? "down" : "up",
      lastError: this.lastError,
      lastBatchAt: this.lastBatchAt,
    };
  }

  /** Stops fetching (a fetch under way ends within fetchExpiresMs), lets a batch being written finish or give up, closes the connection. */
  async stop(): Promise<void> {
    this.abort.abort();
    await this.done.catch(() => undefined);
    await this.writer.close();
  }
}
