import { headers as natsHeaders, nuid, type MsgHdrs, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import { FabricError } from "./errors.js";

export const DEFAULT_MAX_OUTSTANDING = 4_096;
export const DEFAULT_PUBLISH_TIMEOUT_MS = 5_000; // 5 s
const SWEEP_INTERVAL_MS = 250;

export interface StoredAck {
  stream: string;
  seq: number;
  duplicate: boolean;
}

/** A JetStream publish that was not stored: no stream for the subject, an error from the stream, or no answer. */
export class PublishError extends FabricError {
  constructor(code: "FABRIC_ERR_NO_STREAM" | "FABRIC_ERR_STORE" | "FABRIC_ERR_STORE_TIMEOUT", message: string) {
    super(code, message);
  }
}

/** nats-server writes `"duplicate": true` (with a space); tolerate either. */
const DUPLICATE = /"duplicate":\s*true/;

/**
 * A JetStream publish ack, `{"stream":"S","seq":N}` (with `"domain"` and `"duplicate":true` at times), read
 * without a full JSON parse on the hot path; anything else is parsed properly.
 */
function parseAck(text: string): StoredAck | Error {
  if (!text.includes('"error"')) {
    const s = text.indexOf('"stream":"');
    const q = text.indexOf('"seq":');
    if (s >= 0 && q >= 0) {
      const end = text.indexOf('"', s + 10);
      return { stream: text.slice(s + 10, end), seq: parseInt(text.slice(q + 6), 10), duplicate: DUPLICATE.test(text) };
    }
  }
  try {
    const ack = JSON.parse(text) as { stream?: string; seq?: number; duplicate?: boolean; error?: { description?: string } };
    if (ack.error !== undefined || ack.stream === undefined) return new Error(ack.error?.description ?? "no ack");
    return { stream: ack.stream, seq: ack.seq ?? 0, duplicate: ack.duplicate === true };
  } catch {
    return new Error("unreadable ack");
  }
}

interface Pending {
  resolve: (ack: StoredAck) => void;
  reject: (err: Error) => void;
  deadline: number;
  subject: string;
}

/**
 * JetStream publishes pipelined on one wildcard reply subscription: each publish carries its own reply
 * subject under the publisher's inbox, acks are matched by that token, and at most `maxOutstanding` are in
 * flight (callers wait for room). About 4× what awaiting `js.publish()` calls reaches from one process here.
 */
/** The inbox prefix a connection was opened with (nats.js keeps its options on the connection). */
function connectionInboxPrefix(nc: NatsConnection): string | undefined {
  const options = (nc as { options?: { inboxPrefix?: unknown } }).options;
  return typeof options?.inboxPrefix === "string" && options.inboxPrefix !== "" ? options.inboxPrefix : undefined;
}

export class JetStreamPublisher {
  private readonly prefix: string;
  private readonly sub: Subscription;
  private readonly pending = new Map<string, Pending>();
  /** Publishes waiting for room, first come first served (a head index: shift() is O(n) on a long queue). */
  private waiters: (() => void)[] = [];
  private waitersHead = 0;
  private readonly sweeper: NodeJS.Timeout;
  private seq = 0;

  constructor(
    private readonly nc: NatsConnection,
    private readonly options: { maxOutstanding?: number; timeoutMs?: number; inboxPrefix?: string } = {},
  ) {
    // the connection's own inbox prefix by default: a user whose permissions allow only its own inboxes
    this.prefix = `${options.inboxPrefix ?? connectionInboxPrefix(nc) ?? "_INBOX"}.${nuid.next()}`;
    this.sub = nc.subscribe(`${this.prefix}.*`, {
      callback: (err, msg) => {
        if (err !== null) return;
        const token = msg.subject.slice(this.prefix.length + 1);
        const p = this.pending.get(token);
        if (p === undefined) return;
        this.settle(token);
        if (msg.headers?.code === 503) {
          p.reject(new PublishError("FABRIC_ERR_NO_STREAM", `no stream stores ${p.subject}`));
          return;
        }
        const ack = parseAck(msg.string());
        if (ack instanceof Error) p.reject(new PublishError("FABRIC_ERR_STORE", `the stream refused ${p.subject}: ${ack.message}`));
        else p.resolve(ack);
      },
    });
    this.sweeper = setInterval(() => this.sweep(), SWEEP_INTERVAL_MS);
    this.sweeper.unref();
  }

  get outstanding(): number {
    return this.pending.size;
  }

  /** Publishes into JetStream; resolves once stored (or known a duplicate of a stored one). */
  async publish(subject: string, payload: Uint8Array, options: { msgId?: string; headers?: MsgHdrs } = {}): Promise<StoredAck> {
    const max = this.options.maxOutstanding ?? DEFAULT_MAX_OUTSTANDING;
    while (this.pending.size >= max) await new Promise<void>((r) => this.waiters.push(r));
    const token = (this.seq++).toString(36);
    let h = options.headers;
    if (options.msgId !== undefined) {
      h = h ?? natsHeaders();
      h.set("Nats-Msg-Id", options.msgId);
    }
    return new Promise<StoredAck>((resolve, reject) => {
      this.pending.set(token, { resolve, reject, subject, deadline: Date.now() + (this.options.timeoutMs ?? DEFAULT_PUBLISH_TIMEOUT_MS) });
      try {
        this.nc.publish(subject, payload, { reply: `${this.prefix}.${token}`, ...(h === undefined ? {} : { headers: h }) });
      } catch (err) {
        this.settle(token);
        reject(err instanceof Error ? err : new Error(String(err)));
      }
    });
  }

  private settle(token: string): void {
    this.pending.delete(token);
    if (this.waitersHead < this.waiters.length) {
      const wake = this.waiters[this.waitersHead++];
      if (this.waitersHead >= 1_024 && this.waitersHead * 2 >= this.waiters.length) {
        this.waiters = this.waiters.slice(this.waitersHead);
        this.waitersHead = 0;
      }
      wake?.();
    }
  }

  private sweep(): void {
    const now = Date.now();
    for (const [token, p] of this.pending) {
      if (p.deadline > now) continue;
      this.settle(token);
      p.reject(new PublishError("FABRIC_ERR_STORE_TIMEOUT", `no ack for ${p.subject} in time`));
    }
  }

  close(): void {
    clearInterval(this.sweeper);
    this.sub.unsubscribe();
    for (const [token, p] of this.pending) {
      this.settle(token);
      p.reject(new PublishError("FABRIC_ERR_STORE_TIMEOUT", `publisher closed before ${p.subject} was acknowledged`));
    }
    for (const w of this.waiters.slice(this.waitersHead)) w();
    this.waiters = [];
    this.waitersHead = 0;
  }
}
