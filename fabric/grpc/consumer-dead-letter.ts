import type { ConsumerInfo, JetStreamManager } from "@nats-io/jetstream";
import { headers as natsHeaders, type Msg, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import { DEAD_LETTER_STREAM, deadLetterSubject } from "../../streams/index.js";
import { errorMessage, type JetStreamPublisher, type Logger } from "../core/index.js";
import { DEAD_LETTER_METADATA } from "./consumer-setup.js";

/** The headers a dead-lettered message carries besides its own. */
export const DEAD_LETTER_HEADERS = {
  stream: "Fabric-Dead-Letter-Stream",
  sequence: "Fabric-Dead-Letter-Sequence",
  subject: "Fabric-Dead-Letter-Subject",
  consumer: "Fabric-Dead-Letter-Consumer",
  deliveries: "Fabric-Dead-Letter-Deliveries",
  reason: "Fabric-Dead-Letter-Reason",
} as const;

/** What JetStream sends when a message of a consumer reached its max_deliver without being acked. */
const MAX_DELIVERIES_ADVISORY = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.>";

/** Headers of the original that would change how DEAD_LETTER stores the copy. */
const DROPPED_HEADER = /^nats-(msg-id|expected-|ttl|rollup|schedule|batch-|marker-reason)/i;

export interface DeadLetter {
  stream: string;
  consumer: string;
  seq: number;
  deliveries: number;
  reason: string;
}

/** The consumers whose messages go to DEAD_LETTER: marked by the gateway when it set their max_deliver. */
export function deadLetterCap(info: ConsumerInfo): number {
  const max = info.config.max_deliver ?? 0;
  return info.config.metadata?.[DEAD_LETTER_METADATA] === "true" && max > 0 ? max : 0;
}

/**
 * Dead-lettering of poison messages. JetStream's max-deliveries advisory (in the tenant account, where every
 * gateway's connection receives it) covers a message whose last lease ran out or that was nak'ed at its last
 * delivery, whichever gateway (if any still runs) held it; a nak at the last delivery that goes through a
 * gateway is diverted by that gateway directly (`divert`: copied, then terminated, so the consumer's ack floor
 * moves on, which it does not after max_deliver). Every gateway copies the message with the same Nats-Msg-Id,
 * so DEAD_LETTER stores it once.
 */
export class DeadLetters {
  private sub: Subscription | undefined;

  constructor(
    private readonly nc: NatsConnection,
    private readonly publisher: JetStreamPublisher,
    private readonly jsm: () => Promise<JetStreamManager>,
    private readonly log: Logger,
  ) {}

  /** Listens for the advisory (idempotent; the subscription ends with the connection). */
  start(): void {
    if (this.sub !== undefined) return;
    try {
      this.sub = this.nc.subscribe(MAX_DELIVERIES_ADVISORY, {
        callback: (err, m) => {
          if (err === null) void this.onAdvisory(m);
        },
      });
    } catch (err) {
      this.log.warn({ err: errorMessage(err) }, "cannot listen for max-deliveries advisories: poison messages are not dead-lettered");
    }
  }

  private async onAdvisory(m: Msg): Promise<void> {
    let a: { stream?: unknown; consumer?: unknown; stream_seq?: unknown; deliveries?: unknown };
    try {
      a = m.json();
    } catch {
      return;
    }
    if (typeof a.stream !== "string" || typeof a.consumer !== "string" || typeof a.stream_seq !== "number" || typeof a.deliveries !== "number") return;
    const dl = { stream: a.stream, consumer: a.consumer, seq: a.stream_seq, deliveries: a.deliveries, reason: "max deliveries reached: nak'ed at the last delivery, or its last lease ran out" };
    try {
      const info = await (await this.jsm()).consumers.info(dl.stream, dl.consumer);
      if (deadLetterCap(info) === 0) return;
      await this.copy(dl);
    } catch (err) {
      this.log.warn({ ...dl, err: errorMessage(err) }, "dead-lettering failed");
    }
  }

  /** Copies the message to DEAD_LETTER (stored once per stream, consumer and sequence). */
  async copy(dl: DeadLetter): Promise<void> {
    const sm = await (await this.jsm()).streams.getMessage(dl.stream, { seq: dl.seq });
    if (sm === null) {
      this.log.warn(dl, "a message to dead-letter is gone from its stream");
      return;
    }
    const h = natsHeaders();
    for (const k of sm.header?.keys() ?? []) if (!DROPPED_HEADER.test(k)) for (const v of sm.header.values(k)) h.append(k, v);
    h.set(DEAD_LETTER_HEADERS.stream, dl.stream);
    h.set(DEAD_LETTER_HEADERS.sequence, String(dl.seq));
    h.set(DEAD_LETTER_HEADERS.subject, sm.subject);
    h.set(DEAD_LETTER_HEADERS.consumer, dl.consumer);
    h.set(DEAD_LETTER_HEADERS.deliveries, String(dl.deliveries));
    h.set(DEAD_LETTER_HEADERS.reason, dl.reason);
    const ack = await this.publisher.publish(deadLetterSubject(dl.stream, dl.consumer), sm.data, { headers: h, msgId: `dl:${dl.stream}:${dl.consumer}:${dl.seq}` });
    if (ack.stream !== DEAD_LETTER_STREAM) throw new Error(`the dead letter went to stream ${ack.stream}, not ${DEAD_LETTER_STREAM}`);
    if (!ack.duplicate) this.log.info({ ...dl, subject: sm.subject }, "message dead-lettered");
  }

  /**
   * A nak at the last allowed delivery, through this gateway: copied to DEAD_LETTER, then terminated; when the
   * copy fails the nak goes through instead (JetStream's advisory then retries the copy).
   */
  divert(dl: DeadLetter, reply: string, term: Uint8Array, nak: Uint8Array): void {
    this.copy(dl).then(
      () => this.publishQuietly(reply, term),
      (err: unknown) => {
        this.log.warn({ ...dl, err: errorMessage(err) }, "dead-lettering failed; nak'ed instead");
        this.publishQuietly(reply, nak);
      },
    );
  }

  private publishQuietly(subject: string, payload: Uint8Array): void {
    try {
      this.nc.publish(subject, payload);
    } catch {
      // closed: the lease runs out and the advisory takes over
    }
  }
}
