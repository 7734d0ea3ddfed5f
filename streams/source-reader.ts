import { jetstream, jetstreamManager, AckPolicy, DeliverPolicy, type ConsumerMessages, type JsMsg } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { emptyAckSubject, errorMessage, readAckSubject, type AckSubject, type Logger } from "../fabric/core/index.js";

/** Messages asked for per pull: big pulls are what make a callback consume fast (~2× the default's rate). */
const PULL_MESSAGES = 10_000;
const INACTIVE_MS = 30_000;

export interface SourceReaderOptions {
  stream: string;
  filter: string;
  /** The first stream sequence to read. */
  fromSeq: number;
  onMessage(m: JsMsg, d: AckSubject): void;
  logger: Logger;
}

export interface SourceReader {
  /** The last stream sequence delivered, and how many messages were pending after it. */
  last(): { seq: number; pending: number };
  close(): Promise<void>;
}

/**
 * Reads a stream in order from a sequence on, through an ephemeral pull consumer without acknowledgements (the
 * reader's position lives in the window checkpoints, which are its acknowledgements). It does what an ordered
 * consumer does, at twice its rate here: a gap in the consumer's delivery sequence, a deleted or vanished
 * consumer, or missed heartbeats restart it from the message after the last one delivered.
 */
export async function readSource(nc: NatsConnection, options: SourceReaderOptions): Promise<SourceReader> {
  const { stream, filter, logger: log } = options;
  const js = jetstream(nc);
  const jsm = await jetstreamManager(nc);
  let lastSeq = options.fromSeq - 1;
  const scratch = emptyAckSubject();
  let pending = 0;
  let closed = false;
  let current: { name: string; messages: ConsumerMessages } | undefined;
  let restarting: Promise<void> = Promise.resolve();

  const open = async (): Promise<void> => {
    const info = await jsm.consumers.add(stream, {
      description: "windows source reader", // `fabric status` counts consumers by purpose
      ack_policy: AckPolicy.None,
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: lastSeq + 1,
      filter_subject: filter,
      inactive_threshold: INACTIVE_MS * 1_000_000,
      mem_storage: true,
      num_replicas: 1,
    });
    pending = info.num_pending;
    const consumer = await js.consumers.get(stream, info.name);
    let expected = 1;
    const me: { name: string; messages: ConsumerMessages } = {
      name: info.name,
      messages: await consumer.consume({
        max_messages: PULL_MESSAGES,
        callback: (m) => {
          if (current !== me) return;
          // the reply subject (public on nats.js's JsMsgImpl, not in the JsMsg type)
          const reply = (m as JsMsg & { reply?: unknown }).reply;
          // read in place into one object: onMessage uses it before the next delivery
          const d = scratch;
          if (typeof reply !== "string" || !readAckSubject(reply, d) || d.deliverySeq !== expected) {
            log.warn({ stream, expected, got: d.deliverySeq }, "gap in the source consumer; restarting it");
            restart();
            return;
          }
          expected++;
          lastSeq = d.streamSeq;
          pending = d.pending;
          options.onMessage(m, d);
        },
      }),
    };
    current = me;
    void (async () => {
      for await (const s of me.messages.status()) {
        if (current !== me) return;
        if (s.type === "consumer_deleted" || s.type === "consumer_not_found" || (s.type === "heartbeats_missed" && s.count >= 2)) {
          log.warn({ stream, status: s.type }, "source consumer lost; restarting it");
          restart();
          return;
        }
      }
    })();
  };

  const restart = (): void => {
    const old = current;
    current = undefined;
    restarting = restarting.then(async () => {
      if (old !== undefined) {
        await old.messages.close().catch(() => undefined);
        await jsm.consumers.delete(stream, old.name).catch(() => undefined);
      }
      while (!closed) {
        try {
          await open();
          return;
        } catch (err) {
          log.warn({ stream, err: errorMessage(err) }, "source consumer not created; retrying");
          await new Promise((r) => setTimeout(r, 500));
        }
      }
    });
  };

  await open();
  return {
    last: () => ({ seq: lastSeq, pending }),
    close: async () => {
      closed = true;
      await restarting;
      const c = current;
      current = undefined;
      if (c !== undefined) {
        await c.messages.close().catch(() => undefined);
        await jsm.consumers.delete(stream, c.name).catch(() => undefined);
      }
    },
  };
}
