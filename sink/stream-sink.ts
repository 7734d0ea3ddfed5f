import { setTimeout as delay } from "node:timers/promises";
import { AckPolicy, DeliverPolicy, jetstream, type ConsumerMessages, type JetStreamManager, type JsMsg } from "@nats-io/jetstream";
import { headers as natsHeaders, nanos, type NatsConnection } from "@nats-io/transport-node";
import { emptyAckSubject, errorMessage, readAckSubject, secondsSince, type JetStreamPublisher, type Logger } from "../fabric/core/index.js";
import { REJECT_REASON_HEADER } from "../streams/index.js";
import { SinkError } from "./errors.js";
import { sinkMetrics } from "./metrics.js";
import type { PostgresSinkConfig } from "./options.js";
import type { ParsedMessage, Row, TableSpec } from "./table-spec.js";
import { tableName } from "./schema.js";
import { TableWriter } from "./table-writer.js";

export interface StreamSinkStatus {
  stream: string;
  table: string;
  consumer: string;
  /** Messages of the stream the sink has not had yet (the consumer's num_pending); undefined when NATS did not answer. */
  pending: number | undefined;
  /** Messages delivered and not yet acknowledged (held, being written, or waiting for the database). */
  ackPending: number | undefined;
  /** Rows committed (re-deliveries the unique key dropped included) and messages sent to REJECTED, by this process. */
  written: number;
  rejected: number;
  database: "up" | "down";
  /** `active`: this process holds the sink's claim on the table and writes; `standby`: another does. */
  role: "active" | "standby";
  /** The last failure while the database is down. */
  lastError: string | undefined;
  /** When the last batch was committed (ISO time), by this process. */
  lastBatchAt: string | undefined;
}

/** The acknowledgement (nats.js's JsMsg.ack() sends the same). */
const ACK = "+ACK";

/** Batches' worth of messages the consumer may have out (max_ack_pending): one being written, the rest held. */
const HELD_BATCHES = 4;

export const consumerName = (config: Pick<PostgresSinkConfig, "name">, spec: TableSpec): string => `sink-${config.name}-${spec.stream}`;

/**
 * A message received and parsed, waiting for its batch: what a batch needs of it (its payload only for REJECTED,
 * its reply subject to acknowledge it), not nats.js's message objects, which then die young.
 */
interface Held {
  seq: number;
  subject: string;
  data: Uint8Array;
  reply: string;
  parsed: ParsedMessage;
}

/**
 * One stream into its table, exactly once. The position (the last stream sequence written) lives in the
 * database, written in the transaction that writes the rows; the JetStream consumer is only the cursor. On
 * (re)claiming the table the sink makes its durable consumer start at the message after that position, so a
 * crash at any point (before COMMIT, between COMMIT and the acknowledgement) neither loses nor repeats a row.
 *
 * The consumer is read with consume() (continuous pulls, a callback per message: nats.js's fast path); each
 * message is parsed as it arrives and held. One writer takes what is held, up to maxBatch, writes it in one
 * transaction, then acknowledges its last message (ack policy `all`: one acknowledgement per batch); what
 * arrives meanwhile is the next batch (group commit: small batches and low lag at a low rate, full ones at a high
 * rate). max_ack_pending bounds what is held. While the database is down the sink reads nothing (the stream
 * keeps the backlog) and claims again with exponential backoff; a process that does not get the claim (another
 * runs the sink) stands by and tries again every retryMaxMs.
 */
export class StreamSink {
  private readonly writer: TableWriter;
  private readonly abort = new AbortController();
  private messages: ConsumerMessages | undefined;
  private held: Held[] = [];
  /** The highest stream sequence held or written: a delivery at or below it is a redelivery, dropped. */
  private highest = 0;
  private wake: (() => void) | undefined;
  /** The write loop must end: the claim on the table is gone, or the consumer is (made again at the position). */
  private ended = false;
  private done: Promise<void> = Promise.resolve();
  private written = 0;
  private rejected = 0;
  private down = false;
  private standby = false;
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
    this.writer = new TableWriter(config, spec, logger, (why) => {
      this.down = true;
      this.lastError = why;
      this.end();
    });
    this.consumerName = consumerName(config, spec);
    this.table = tableName(config, spec);
  }

  /** False while the database is unreachable or failing (claimed again with backoff). */
  get databaseUp(): boolean {
    return !this.down;
  }

  get partitions(): TableWriter["partitions"] {
    return this.writer.partitions;
  }

  /** Starts claiming the table, in the background (the database may be down, or another process writing). */
  start(): void {
    this.done = this.run();
  }

  private async run(): Promise<void> {
    let backoff = this.config.retryMinMs;
    while (!this.abort.signal.aborted) {
      let position: number | undefined;
      // from here on, the connection failing (onLost) ends the write loop that follows at once
      this.ended = false;
      try {
        position = await this.writer.claim();
        if (this.standby || this.down) this.logger.info({ stream: this.spec.jsStream, position }, "sink: table claimed; writing");
        this.standby = this.down = false;
        this.lastError = undefined;
        await this.open(position);
        backoff = this.config.retryMinMs;
      } catch (err) {
        if (this.abort.signal.aborted) break;
        if (err instanceof SinkError && err.code === "FABRIC_ERR_SINK_STANDBY") {
          if (!this.standby) this.logger.info({ stream: this.spec.jsStream }, err.message);
          this.standby = true;
          await this.sleep(this.config.retryMaxMs);
          continue;
        }
        this.down = !this.writer.claimed;
        this.lastError = errorMessage(err);
        sinkMetrics.batch(this.config.name, this.spec.jsStream, "failed");
        this.logger.warn({ stream: this.spec.jsStream, retryInMs: backoff, err: this.lastError }, "sink: cannot claim the table or start its consumer; retrying");
        await this.writer.close();
        await this.sleep(backoff);
        backoff = Math.min(backoff * 2, this.config.retryMaxMs);
        continue;
      }
      await this.writeLoop();
      await this.closeMessages();
      this.held = [];
    }
    await this.closeMessages();
  }

  /**
   * (Re)creates the durable consumer at the message after `position` and consumes it. No position yet (the
   * table's first claim by this sink, or a sink from before positions were kept): where the consumer's
   * acknowledgements left off, else the stream's start.
   */
  private async open(position: number | undefined): Promise<void> {
    const name = this.consumerName;
    const existing = await this.jsm.consumers.info(this.spec.jsStream, name).catch(() => undefined);
    const from = position !== undefined ? position + 1 : existing !== undefined ? existing.ack_floor.stream_seq + 1 : 1;
    // its start and ack policy cannot be changed in place: the consumer is made anew (the position is in the database)
    if (existing !== undefined) await this.jsm.consumers.delete(this.spec.jsStream, name);
    await this.jsm.consumers.add(this.spec.jsStream, {
      durable_name: name,
      ack_policy: AckPolicy.All,
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: from,
      ack_wait: nanos(this.config.ackWaitMs),
      max_ack_pending: this.config.maxBatch * HELD_BATCHES,
      description: `fabric sink ${this.config.name}: ${this.spec.jsStream} into PostgreSQL`,
    });
    this.highest = from - 1;
    this.held = [];
    const consumer = await jetstream(this.nc).consumers.get(this.spec.jsStream, name);
    const delivery = emptyAckSubject();
    const messages = await consumer.consume({
      max_messages: this.config.maxBatch * HELD_BATCHES,
      callback: (m) => {
        if (this.messages !== messages) return;
        // the reply subject read in place (nats.js's m.info allocates and splits per message)
        const reply = (m as JsMsg & { reply?: unknown }).reply;
        if (typeof reply !== "string" || !readAckSubject(reply, delivery)) {
          this.logger.warn({ stream: this.spec.jsStream, subject: m.subject }, "sink: a delivery without a JetStream reply subject; ignored");
          return;
        }
        // a redelivery (ack_wait passed while it was held): the first delivery is held or written
        if (delivery.streamSeq <= this.highest) return;
        this.highest = delivery.streamSeq;
        this.held.push({ seq: delivery.streamSeq, subject: m.subject, data: m.data, reply, parsed: this.spec.parse(m, delivery) });
        this.wake?.();
      },
    });
    this.messages = messages;
    void this.watch(messages);
  }

  /** A consumer deleted under the sink ends the write loop: it is made again at the position. */
  private async watch(messages: ConsumerMessages): Promise<void> {
    for await (const s of messages.status()) {
      if (this.messages !== messages) return;
      if (s.type !== "consumer_deleted" && s.type !== "consumer_not_found") continue;
      this.logger.warn({ stream: this.spec.jsStream, consumer: this.consumerName, status: s.type }, "sink: consumer lost; making it again");
      this.end();
      return;
    }
  }

  private end(): void {
    this.ended = true;
    this.wake?.();
  }

  private async closeMessages(): Promise<void> {
    const messages = this.messages;
    this.messages = undefined;
    await messages?.close().catch(() => undefined);
  }

  /** Writes what is held until the sink stops or the loop must end (the run loop then claims again). */
  private async writeLoop(): Promise<void> {
    for (;;) {
      if (this.abort.signal.aborted || this.ended) return;
      if (this.held.length === 0) {
        await new Promise<void>((resolve) => {
          this.wake = resolve;
        });
        this.wake = undefined;
        continue;
      }
      const batch = this.held.splice(0, this.config.maxBatch);
      try {
        await this.handle(batch);
      } catch (err) {
        if (err instanceof SinkError && err.code === "FABRIC_ERR_SINK_STOPPED") return;
        // the connection is gone (or publishing the batch's rejects failed, which rolled it back): claim again
        await this.writer.close();
        this.down = true;
        this.lastError = errorMessage(err);
        sinkMetrics.batch(this.config.name, this.spec.jsStream, "failed");
        this.logger.warn({ stream: this.spec.jsStream, err: this.lastError }, "sink: writing a batch failed; reading stops until the table is claimed again");
        await this.sleep(this.config.retryMinMs);
        return;
      }
    }
  }

  private async handle(batch: readonly Held[]): Promise<void> {
    const last = batch[batch.length - 1];
    if (last === undefined) return;
    const rows: Row[] = [];
    const rowMsgs: Held[] = [];
    const rejects: { m: Held; reason: string }[] = [];
    for (const h of batch) {
      if ("reject" in h.parsed) rejects.push({ m: h, reason: h.parsed.reject });
      else {
        rows.push(h.parsed);
        rowMsgs.push(h);
      }
    }
    let refusedCount = 0;
    const start = performance.now();
    const { inserted, refused } = await this.retrying("write to postgres", () =>
      // what is refused is in REJECTED before COMMIT moves the position past it
      this.writer.write(rows, last.seq, async (refused) => {
        const all = [...rejects];
        for (const r of refused) {
          const m = rowMsgs[r.index];
          if (m !== undefined) all.push({ m, reason: `sink: postgres refused the row: ${r.message}` });
        }
        refusedCount = all.length;
        if (all.length > 0) await Promise.all(all.map((r) => this.reject(r.m, r.reason)));
      }),
    );
    sinkMetrics.batch(this.config.name, this.spec.jsStream, "ok", secondsSince(start));
    // ack policy `all`: the last message acknowledges the batch
    this.nc.publish(last.reply, ACK);
    this.written += rows.length - refused.length;
    this.rejected += refusedCount;
    this.lastBatchAt = new Date().toISOString();
    sinkMetrics.rows(this.config.name, this.table, "written", inserted);
    sinkMetrics.rows(this.config.name, this.table, "duplicate", rows.length - refused.length - inserted);
    sinkMetrics.rows(this.config.name, this.table, "rejected", refusedCount);
  }

  private reject(m: Pick<Held, "subject" | "data" | "seq">, reason: string): Promise<unknown> {
    const h = natsHeaders();
    h.set(REJECT_REASON_HEADER, reason);
    return this.publisher.publish(`rejected.${m.subject}`, m.data, { msgId: `sink:${this.config.name}:${this.spec.stream}:${m.seq}`, headers: h });
  }

  /**
   * Runs `fn` until it succeeds, backing off exponentially, while it fails with the claim kept (partitions
   * dropped meanwhile). A lost claim is thrown: the sink claims again. (Messages redelivered meanwhile, as
   * ack_wait passes, are dropped on arrival: their first delivery is held.)
   */
  private async retrying<T>(what: string, fn: () => Promise<T>): Promise<T> {
    let backoff = this.config.retryMinMs;
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        if (!(err instanceof SinkError && err.code === "FABRIC_ERR_SINK_SCHEMA")) throw err;
        sinkMetrics.batch(this.config.name, this.spec.jsStream, "failed");
        this.logger.warn({ stream: this.spec.jsStream, attempt, retryInMs: backoff, err: errorMessage(err) }, `sink: ${what} failed; retrying`);
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
      role: this.standby ? "standby" : "active",
      lastError: this.lastError,
      lastBatchAt: this.lastBatchAt,
    };
  }

  /** Stops reading, lets a batch being written finish, closes the connection (giving up the claim). */
  async stop(): Promise<void> {
    this.abort.abort();
    this.wake?.();
    await this.done.catch((err: unknown) => this.logger.warn({ stream: this.spec.jsStream, err: errorMessage(err) }, "sink: stopped on an error"));
    await this.writer.close();
  }
}
