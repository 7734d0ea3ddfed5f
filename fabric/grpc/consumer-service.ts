import { randomBytes } from "node:crypto";
import { jetstream, jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { createInbox, type Msg, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import type { ServerDuplexStream, ServiceError } from "@grpc/grpc-js";
import {
  ConsumerServiceService,
  Settlement_Kind,
  type ConsumeRequest,
  type ConsumeResponse,
  type ConsumerServiceServer,
  type Credit,
  type Delivery,
  type Open,
  type SettleError,
  type Settlement,
} from "../../proto/gen/fabric/v1/consumer.js";
import { errorMessage, InvalidInputError } from "../core/index.js";
import type { Caller } from "./auth.js";
import { Attempts, FetchTokens, NAK, settlementPayload, toEvent, type Attempt } from "./consumer-attempts.js";
import { emptyAckSubject, parseAckSubject, readAckSubject, type AckSubject } from "../core/index.js";
import { ackWaitMsOf, ackWaitOf, assertDurableName, assertFilters, assertStreamExists, assertStreamName, deliverPolicyOf, ensureConsumer, maxInFlightOf } from "./consumer-setup.js";
import { callerOf, type GatewayContext } from "./context.js";
import { GatewayError, toServiceError } from "./errors.js";
import { serverStream, timeLeft, unary, write } from "./handlers.js";

/** How often a Consume stream reports pending, ack pending and credit (and once its credit is used up). */
export const CONSUME_HEARTBEAT_MS = 2_000;
/** How long one JetStream pull request of a Consume stream waits at the server; a new one follows. */
const PULL_EXPIRES_MS = 20_000;
/** A pull neither fulfilled nor ended by the server this long after it expired is taken as lost. */
const PULL_GRACE_MS = 2_000;
const MAX_PULL_BATCH = 10_000;
const MAX_CONCURRENT_PULLS = 8;
/** A pull that JetStream refused for a passing reason (too many waiting pulls, leader change) is retried after this. */
const PULL_RETRY_MS = 500;
const MAX_CREDIT_MESSAGES = 2 ** 31 - 1;

const DEFAULT_FETCH_MESSAGES = 100;
const MAX_FETCH_MESSAGES = 1_000;
const DEFAULT_FETCH_WAIT_MS = 1_000;
const MAX_FETCH_WAIT_MS = 30_000;
/** A Fetch response stays well under the gateway's 4 MiB message limit. */
const FETCH_MAX_BYTES = 3 * 1024 * 1024;
const MAX_SETTLEMENTS = 1_000;
const MAX_SETTLEMENTS_PER_FRAME = 10_000;
const SETTLE_CONFIRM_TIMEOUT_MS = 5_000;

const ms2ns = (ms: number): number => ms * 1_000_000;

/** What every call of the service shares. */
interface Shared {
  ctx: GatewayContext;
  nc: NatsConnection;
  attempts: Attempts;
  tokens: FetchTokens;
  jsm(): Promise<JetStreamManager>;
}

function pullSubject(stream: string, consumer: string): string {
  return `$JS.API.CONSUMER.MSG.NEXT.${stream}.${consumer}`;
}

/** A status message of a pull request (no ack subject): its code and description. */
function statusOf(m: Msg): { code: number; description: string } {
  return { code: m.headers?.code ?? 0, description: m.headers?.description ?? "" };
}

function deliveryOf(stream: string, m: Msg, a: AckSubject, token: string, leaseUntil: number): Delivery {
  return { ackToken: token, attempt: a.attempt, leaseExpiresAtMs: leaseUntil, event: toEvent(stream, a.streamSeq, m.subject, m.headers, a.storedAtMs, m.data) };
}

/**
 * A delivery's size as JetStream counts it against a pull's max_bytes: subject, ack subject, headers and data
 * (nats.js's Msg has it at run time, not in its type; without it, headers are not counted).
 */
function sizeOf(m: Msg): number {
  const size = (m as Msg & { size?: () => number }).size;
  return typeof size === "function" ? size.call(m) : m.subject.length + (m.reply ?? "").length + m.data.length;
}

/** Publishes, unless the connection is closed or draining (then JetStream redelivers after the lease). */
function publishQuietly(nc: NatsConnection, subject: string, payload: Uint8Array): void {
  try {
    nc.publish(subject, payload);
  } catch {
    // the lease runs out instead
  }
}

interface Pull {
  /** Its own inbox: a delivery's subject is the message's, so the subscription tells which pull it is for. */
  sub: Subscription;
  /** Messages and bytes (Infinity: no byte limit) the server may still send for this pull. */
  msgs: number;
  bytes: number;
  timer: NodeJS.Timeout;
}

/**
 * One Consume call. Credits map onto JetStream pull requests: the pulls outstanding never ask for more than the
 * credit not yet covered by other pulls (nor for more bytes, with byte credits), so JetStream never hands the
 * gateway more than the client allowed and nothing is buffered beyond credit. Each pull has its own inbox,
 * unsubscribed when the pull ends (JetStream drops a waiting pull whose inbox lost interest).
 *
 * Tokens are random ids mapped to the attempt in this stream only (Attempts decides staleness: settled,
 * redelivered since, or lease ended); settlements publish JetStream's ack protocol to the attempt's ack subject.
 *
 * At close (half-close, cancel, deadline, revocation, shutdown) the gateway stops pulling (unsubscribing the
 * pulls' inboxes makes JetStream drop the waiting pulls) and naks the deliveries not settled yet without delay,
 * so they come back at once (to a reconnecting client or another consumer of the durable) rather than after
 * the ack wait: the client can no longer settle them on this stream. Messages in transit at that moment come
 * back after the ack wait. An ephemeral consumer is deleted instead.
 */
class ConsumeStream {
  private caller: Caller | undefined;
  private opened = false;
  private closed = false;
  private stream = "";
  private consumer = "";
  private ephemeral = false;
  private ackWaitMs = 0;
  private maxInFlight = 0;
  private maxBytesInFlight = 0;
  private creditMsgs = 0;
  private creditBytes = 0;
  /** Decided by the first credit frame: whether byte credits apply. */
  private byteMode: boolean | undefined;
  /** A pull ended because the next message exceeds the bytes allowed: wait for credit or a settlement. */
  private stalled = false;
  private pullSeq = 0;
  private readonly pulls = new Map<string, Pull>();
  private readonly tokens = new Map<string, Attempt>();
  private readonly scratch = emptyAckSubject();
  private readonly tokenPrefix = randomBytes(12).toString("base64url");
  private tokenSeq = 0;
  private batch: Delivery[] = [];
  private retryTimer: NodeJS.Timeout | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private infoInFlight = false;
  private pending = 0;
  private ackPending = 0;
  private chain: Promise<void> = Promise.resolve();
  private readonly cleanups: (() => void)[] = [];

  constructor(
    private readonly s: Shared,
    private readonly call: ServerDuplexStream<ConsumeRequest, ConsumeResponse>,
  ) {}

  start(): void {
    const { ctx } = this.s;
    this.call.on("cancelled", () => this.end());
    try {
      this.caller = callerOf(ctx, this.call.metadata, ConsumerServiceService.consume.path);
    } catch (err) {
      this.end(toServiceError(err));
      return;
    }
    const end = (err: Partial<ServiceError>): void => this.end(err);
    this.cleanups.push(ctx.auth.track(this.caller, end), ctx.openStream(end));
    this.call.on("data", (req: ConsumeRequest) => this.enqueue(() => this.onFrame(req)));
    // the client half-closed: settlements sent before are applied, then the call ends OK
    this.call.on("end", () => this.enqueue(() => this.end()));
  }

  /** Frames are handled one at a time, in order (open is asynchronous). */
  private enqueue(fn: () => Promise<void> | void): void {
    this.chain = this.chain.then(fn).catch((err: unknown) => this.end(toServiceError(err)));
  }

  private async onFrame(req: ConsumeRequest): Promise<void> {
    if (this.closed) return;
    const f = req.frame;
    if (!this.opened) {
      if (f?.$case !== "open") throw new InvalidInputError("frame: the first frame must be open");
      await this.open(f.value);
      return;
    }
    switch (f?.$case) {
      case "open":
        throw new InvalidInputError("frame: open may only be the first frame");
      case "credit":
        this.credit(f.value);
        return;
      case "settle":
        if (f.value.settlements.length > MAX_SETTLEMENTS_PER_FRAME) throw new InvalidInputError(`settle.settlements: at most ${MAX_SETTLEMENTS_PER_FRAME} per frame`);
        for (const st of f.value.settlements) this.settle(st);
        this.refill(); // once per frame: settlements freed room for more in flight
        return;
      default:
        throw new InvalidInputError("frame: one of open, credit or settle is required");
    }
  }

  private async open(o: Open): Promise<void> {
    const caller = this.caller;
    if (caller === undefined) return;
    assertStreamName(o.stream, "open.stream");
    if (o.durable !== "") assertDurableName(o.durable, "open.durable");
    const filters = assertFilters(caller, o.filterSubjects, "open.filter_subjects");
    ackWaitOf(o.ackWaitMs, "open.ack_wait_ms");
    this.maxInFlight = maxInFlightOf(o.maxMessagesInFlight, "open.max_messages_in_flight");
    deliverPolicyOf(o.start, "open.start");
    this.maxBytesInFlight = o.maxBytesInFlight;
    const jsm = await this.s.jsm();
    await assertStreamExists(jsm, o.stream);
    const info = await ensureConsumer(jsm, { stream: o.stream, durable: o.durable, filters, start: o.start, ackWaitMs: o.ackWaitMs, maxInFlight: o.maxMessagesInFlight });
    this.stream = o.stream;
    this.consumer = info.name;
    this.ephemeral = o.durable === "";
    this.ackWaitMs = ackWaitMsOf(info);
    this.pending = info.num_pending;
    this.ackPending = info.num_ack_pending;
    if (this.closed) {
      // ended while the consumer was being set up
      if (this.ephemeral) await jsm.consumers.delete(this.stream, this.consumer).catch(() => undefined);
      return;
    }
    this.opened = true;
    this.s.ctx.logger.debug({ user: caller.name, stream: this.stream, consumer: this.consumer, filters }, "consume stream opened");
    this.send({ frame: { $case: "opened", value: { consumer: this.consumer } } });
    this.heartbeatTimer = setInterval(() => {
      this.expireLeases();
      this.refill();
      void this.heartbeat();
    }, CONSUME_HEARTBEAT_MS);
    this.heartbeatTimer.unref();
    this.refill();
  }

  private credit(c: Credit): void {
    if (this.byteMode === undefined) this.byteMode = c.bytes > 0;
    else if (!this.byteMode && c.bytes > 0) throw new InvalidInputError("credit.bytes: byte credits must be given from the first credit frame on (this stream counts messages only)");
    this.creditMsgs = Math.min(MAX_CREDIT_MESSAGES, this.creditMsgs + c.messages);
    if (this.byteMode) this.creditBytes = Math.min(Number.MAX_SAFE_INTEGER, this.creditBytes + c.bytes);
    if (c.bytes > 0) this.stalled = false;
    this.refill();
  }

  private refuse(ackToken: string, code: string, message: string): void {
    this.send({ frame: { $case: "settleError", value: { ackToken, code, message } } });
  }

  /** One settlement of a frame (the frame's handler refills once after all of them). */
  private settle(st: Settlement): void {
    const payload = settlementPayload(st.kind, st.delayMs);
    if (payload === undefined) return this.refuse(st.ackToken, "FABRIC_ERR_INVALID_INPUT", "settle.kind must be ACK, NACK, IN_PROGRESS or TERMINATE");
    const x = this.tokens.get(st.ackToken);
    if (x === undefined) return this.refuse(st.ackToken, "FABRIC_ERR_STALE_TOKEN", "unknown ack token: not issued on this stream, settled already, or its lease ended");
    const why = this.s.attempts.staleness(x);
    if (why !== undefined) {
      this.tokens.delete(st.ackToken);
      return this.refuse(st.ackToken, "FABRIC_ERR_STALE_TOKEN", why);
    }
    publishQuietly(this.s.nc, x.reply, payload);
    if (st.kind === Settlement_Kind.KIND_IN_PROGRESS) {
      this.s.attempts.extend(x);
      return;
    }
    this.s.attempts.settle(x);
    this.tokens.delete(st.ackToken);
    this.stalled = false; // in-flight bytes were freed
  }

  /** Deliveries whose lease ended are no longer in flight: JetStream redelivers them (their tokens are stale). */
  private expireLeases(now = Date.now()): void {
    for (const [t, x] of this.tokens) if (now >= x.leaseUntil) this.tokens.delete(t);
  }

  /** Issues pulls for the credit (and in-flight room) not yet covered by outstanding pulls; never throws (timers call it). */
  private refill(): void {
    if (this.closed || !this.opened || this.retryTimer !== undefined) return;
    try {
      this.pull();
    } catch (err) {
      this.end(toServiceError(err));
    }
  }

  private pull(): void {
    while (this.pulls.size < MAX_CONCURRENT_PULLS) {
      let coveredMsgs = 0;
      let coveredBytes = 0;
      for (const p of this.pulls.values()) {
        coveredMsgs += p.msgs;
        if (Number.isFinite(p.bytes)) coveredBytes += p.bytes;
      }
      const batch = Math.min(this.creditMsgs - coveredMsgs, this.maxInFlight - this.tokens.size - coveredMsgs, MAX_PULL_BATCH);
      if (batch <= 0) return;
      let maxBytes = Infinity;
      if (this.byteMode === true) maxBytes = this.creditBytes - coveredBytes;
      if (this.maxBytesInFlight > 0) {
        let inFlight = 0;
        for (const x of this.tokens.values()) inFlight += x.size;
        maxBytes = Math.min(maxBytes, this.maxBytesInFlight - inFlight - coveredBytes);
      }
      if (Number.isFinite(maxBytes) && (maxBytes <= 0 || this.stalled)) return;
      const id = String(++this.pullSeq);
      const inbox = createInbox();
      const timer = setTimeout(() => {
        // never ended by the server (lost with a reconnect?): forget it
        this.endPull(id);
        this.refill();
      }, PULL_EXPIRES_MS + PULL_GRACE_MS);
      timer.unref();
      const body = { batch, expires: ms2ns(PULL_EXPIRES_MS), ...(Number.isFinite(maxBytes) ? { max_bytes: maxBytes } : {}) };
      try {
        const sub = this.s.nc.subscribe(inbox, { callback: (err, m) => this.onMessage(id, err, m) });
        this.pulls.set(id, { sub, msgs: batch, bytes: maxBytes, timer });
        this.s.nc.publish(pullSubject(this.stream, this.consumer), JSON.stringify(body), { reply: inbox });
      } catch (err) {
        this.endPull(id);
        throw new GatewayError("FABRIC_ERR_UNAVAILABLE", `cannot pull from JetStream: ${errorMessage(err)}`);
      }
    }
  }

  private endPull(id: string): void {
    const p = this.pulls.get(id);
    if (p === undefined) return;
    clearTimeout(p.timer);
    p.sub.unsubscribe();
    this.pulls.delete(id);
  }

  private retryLater(): void {
    if (this.retryTimer !== undefined) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.refill();
    }, PULL_RETRY_MS);
    this.retryTimer.unref();
  }

  private onMessage(id: string, err: Error | null, m: Msg): void {
    if (this.closed) return;
    try {
      if (err !== null) throw new GatewayError("FABRIC_ERR_UNAVAILABLE", `the gateway lost its JetStream subscription: ${err.message}`);
      const reply = m.reply ?? "";
      const a = this.scratch; // read in place: nothing below keeps it past this delivery
      if (!readAckSubject(reply, a)) {
        this.onStatus(id, statusOf(m));
        return;
      }
      const p = this.pulls.get(id);
      if (p === undefined) {
        // its pull was given up (a message still in the inbox's queue): no credit stands behind it
        publishQuietly(this.s.nc, reply, NAK);
        return;
      }
      const size = sizeOf(m);
      p.msgs--;
      if (Number.isFinite(p.bytes)) p.bytes -= size;
      const fulfilled = p.msgs <= 0 || p.bytes <= 0;
      if (fulfilled) this.endPull(id); // JetStream ends such a pull silently
      this.creditMsgs--;
      if (this.byteMode === true) this.creditBytes = Math.max(0, this.creditBytes - size);
      const x = this.s.attempts.record(reply, a, this.ackWaitMs, size);
      // valid on this stream only (its own map): a random prefix and a counter, no random bytes per delivery
      const token = `${this.tokenPrefix}${(++this.tokenSeq).toString(36)}`;
      this.tokens.set(token, x);
      this.pending = a.pending;
      this.deliver(deliveryOf(this.stream, m, a, token, x.leaseUntil));
      if (this.creditMsgs === 0) void this.heartbeat(); // idle until the client grants more
      // a delivery uses up credit and its pull's coverage alike: only a finished pull leaves credit uncovered
      if (fulfilled) this.refill();
    } catch (e) {
      this.end(toServiceError(e));
    }
  }

  private onStatus(id: string, st: { code: number; description: string }): void {
    if (st.code === 100) return; // idle heartbeat / flow control
    this.endPull(id);
    if (st.code === 404 || st.code === 408) {
      this.refill();
      return;
    }
    if (st.code === 409 && /consumer deleted/i.test(st.description)) throw new GatewayError("FABRIC_ERR_NOT_FOUND", `consumer ${this.consumer} of stream ${this.stream} was deleted`);
    if (st.code === 409 && /message size exceeds maxbytes/i.test(st.description)) {
      this.stalled = true;
      return;
    }
    if (st.code === 503) throw new GatewayError("FABRIC_ERR_UNAVAILABLE", "JetStream is not available");
    this.s.ctx.logger.debug({ stream: this.stream, consumer: this.consumer, code: st.code, description: st.description }, "pull ended; retrying");
    this.retryLater();
  }

  private async heartbeat(): Promise<void> {
    if (this.closed || !this.opened || this.infoInFlight) return;
    this.infoInFlight = true;
    try {
      const ci = await (await this.s.jsm()).consumers.info(this.stream, this.consumer);
      this.pending = ci.num_pending;
      this.ackPending = ci.num_ack_pending;
    } catch (err) {
      this.s.ctx.logger.debug({ stream: this.stream, consumer: this.consumer, err: errorMessage(err) }, "consumer info for a heartbeat failed");
    } finally {
      this.infoInFlight = false;
    }
    this.send({
      frame: { $case: "heartbeat", value: { pending: this.pending, ackPending: this.ackPending, creditMessages: this.creditMsgs, creditBytes: this.byteMode === true ? this.creditBytes : 0 } },
    });
  }

  /**
   * Writes a frame. Deliveries are bounded by the client's credit, so the transport's own buffer is the only
   * one (no waiting for drain: frames keep their order, and a client that stops reading stops granting credit).
   */
  private send(frame: ConsumeResponse): void {
    if (this.closed || this.call.cancelled) return;
    if (this.batch.length > 0) this.flush(); // deliveries keep their place before any later frame
    this.call.write(frame);
  }

  /**
   * Deliveries are written in batches: what JetStream handed over in one go (one event-loop turn) becomes one
   * frame, where a frame per delivery would cost a transport write each.
   */
  private deliver(d: Delivery): void {
    this.batch.push(d);
    if (this.batch.length === 1) queueMicrotask(() => this.flush());
  }

  private flush(): void {
    if (this.batch.length === 0) return;
    const deliveries = this.batch;
    this.batch = [];
    if (this.closed || this.call.cancelled) return;
    this.call.write({ frame: { $case: "deliveries", value: { deliveries } } });
  }

  /** Ends the call once: OK without `err`; nothing is written after a cancel. */
  private end(err?: Partial<ServiceError>): void {
    if (this.closed) return;
    this.closed = true;
    for (const c of this.cleanups.splice(0)) c();
    clearInterval(this.heartbeatTimer);
    clearTimeout(this.retryTimer);
    for (const id of [...this.pulls.keys()]) this.endPull(id);
    if (this.opened) {
      if (this.ephemeral) {
        void this.s
          .jsm()
          .then((jsm) => jsm.consumers.delete(this.stream, this.consumer))
          .catch(() => undefined);
      } else {
        // what the client can no longer settle comes back at once (see the class comment)
        for (const x of this.tokens.values()) {
          if (this.s.attempts.staleness(x) !== undefined) continue;
          publishQuietly(this.s.nc, x.reply, NAK);
          this.s.attempts.settle(x);
        }
      }
      this.s.ctx.logger.debug({ user: this.caller?.name, stream: this.stream, consumer: this.consumer, unsettled: this.tokens.size, status: err?.code }, "consume stream closed");
    }
    this.tokens.clear();
    if (this.call.cancelled) return;
    // grpc-js: destroy(err) sends no status on a server stream; an 'error' event ends it with err's status
    if (err === undefined) this.call.end();
    else this.call.emit("error", Object.assign(new Error(err.details ?? "ended"), err));
  }
}

/** One pull request for Fetch: waits up to `expiresMs` for the first message, then takes what is there (no_wait). */
async function pullOnce(nc: NatsConnection, stream: string, consumer: string, batch: number, expiresMs: number, giveUpMs: number): Promise<{ m: Msg; a: AckSubject }[]> {
  const inbox = createInbox();
  const got: { m: Msg; a: AckSubject }[] = [];
  await new Promise<void>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    let sub: Subscription | undefined;
    const done = (): void => {
      clearTimeout(timer);
      sub?.unsubscribe();
      resolve();
    };
    const fail = (err: unknown): void => {
      clearTimeout(timer);
      sub?.unsubscribe();
      reject(err instanceof GatewayError ? err : new GatewayError("FABRIC_ERR_UNAVAILABLE", `cannot pull from JetStream: ${errorMessage(err)}`));
    };
    const onMessage = (err: Error | null, m: Msg): void => {
      if (err !== null) {
        fail(err);
        return;
      }
      const a = parseAckSubject(m.reply ?? "");
      if (a === undefined) {
        const st = statusOf(m);
        if (st.code === 100) return;
        if (st.code === 409 && /consumer deleted/i.test(st.description)) {
          fail(new GatewayError("FABRIC_ERR_NOT_FOUND", `consumer ${consumer} of stream ${stream} was deleted`));
          return;
        }
        done(); // 404 no messages, 408 expired, 409 max bytes…
        return;
      }
      got.push({ m, a });
      if (got.length >= batch) done();
    };
    try {
      sub = nc.subscribe(inbox, { callback: onMessage });
      timer = setTimeout(done, giveUpMs);
      nc.publish(pullSubject(stream, consumer), JSON.stringify({ batch, expires: ms2ns(expiresMs), no_wait: true, max_bytes: FETCH_MAX_BYTES }), { reply: inbox });
    } catch (err) {
      fail(err);
    }
  });
  return got;
}

/**
 * ConsumerService: Consume (credits, per-attempt tokens, leases), Tail (an ordered consumer, no acks), Fetch and
 * Settle (tokens that outlive the call: see FetchTokens and Attempts in consumer-attempts.ts).
 */
export function consumerService(ctx: GatewayContext): ConsumerServiceServer {
  let jsmP: Promise<JetStreamManager> | undefined;
  const s: Shared = {
    ctx,
    nc: ctx.nc,
    attempts: new Attempts(),
    tokens: new FetchTokens(),
    jsm: () => {
      jsmP ??= jetstreamManager(ctx.nc).catch((err: unknown) => {
        jsmP = undefined;
        throw err;
      });
      return jsmP;
    },
  };
  const js = jetstream(ctx.nc);

  return {
    consume: (call) => new ConsumeStream(s, call).start(),

    tail: serverStream(ctx, ConsumerServiceService.tail.path, async (req, caller, call, signal) => {
      assertStreamName(req.stream);
      const filters = assertFilters(caller, req.filterSubjects);
      const policy = deliverPolicyOf(req.start);
      await assertStreamExists(await s.jsm(), req.stream);
      if (signal.aborted) return;
      const consumer = await js.consumers.get(req.stream, { filter_subjects: filters, ...policy });
      const messages = await consumer.consume({ max_messages: 256 });
      const stop = (): void => void messages.close().catch(() => undefined);
      signal.addEventListener("abort", stop, { once: true });
      try {
        if (signal.aborted) return;
        for await (const m of messages) {
          const event = toEvent(req.stream, m.seq, m.subject, m.headers, Math.floor(m.info.timestampNanos / 1_000_000), m.data);
          if (!(await write(call, { event }))) break;
        }
      } finally {
        signal.removeEventListener("abort", stop);
        stop();
        await consumer.delete().catch(() => undefined);
      }
    }),

    fetch: unary(ctx, ConsumerServiceService.fetch.path, async (req, caller, call) => {
      assertStreamName(req.stream);
      if (req.durable === "") throw new InvalidInputError("durable is required: Fetch reads a durable consumer");
      assertDurableName(req.durable);
      const filters = assertFilters(caller, req.filterSubjects);
      const batch = req.maxMessages === 0 ? DEFAULT_FETCH_MESSAGES : req.maxMessages;
      if (batch > MAX_FETCH_MESSAGES) throw new InvalidInputError(`max_messages must be at most ${MAX_FETCH_MESSAGES}`);
      if (req.waitMs > MAX_FETCH_WAIT_MS) throw new InvalidInputError(`wait_ms must be at most ${MAX_FETCH_WAIT_MS}`);
      ackWaitOf(req.ackWaitMs, "ack_wait_ms");
      const jsm = await s.jsm();
      await assertStreamExists(jsm, req.stream);
      const info = await ensureConsumer(jsm, { stream: req.stream, durable: req.durable, filters, start: undefined, ackWaitMs: req.ackWaitMs, maxInFlight: 0 });
      const ackWaitMs = ackWaitMsOf(info);
      // never past the call's deadline: leave room to answer
      const left = timeLeft(call);
      const room = left - Math.min(250, Math.floor(left / 4));
      const wait = Math.max(1, Math.min(req.waitMs === 0 ? DEFAULT_FETCH_WAIT_MS : req.waitMs, room));
      const got = await pullOnce(s.nc, req.stream, info.name, batch, wait, Math.max(wait, Math.min(wait + 1_000, room)));
      if (call.cancelled) {
        // nobody will settle these: back to JetStream at once
        for (const { m } of got) publishQuietly(s.nc, m.reply ?? "", NAK);
        return { deliveries: [] };
      }
      const now = Date.now();
      const deliveries = got.map(({ m, a }) => {
        const reply = m.reply ?? "";
        const x = s.attempts.record(reply, a, ackWaitMs, sizeOf(m), now);
        return deliveryOf(req.stream, m, a, s.tokens.sign(caller.publicKey, reply), x.leaseUntil);
      });
      return { deliveries };
    }),

    settle: unary(ctx, ConsumerServiceService.settle.path, async (req, caller, call) => {
      if (req.settlements.length > MAX_SETTLEMENTS) throw new InvalidInputError(`settlements: at most ${MAX_SETTLEMENTS} per call`);
      const errors: SettleError[] = [];
      const timeout = Math.max(1, Math.min(SETTLE_CONFIRM_TIMEOUT_MS, timeLeft(call) - 100));
      await Promise.all(
        req.settlements.map(async (st) => {
          const refuse = (code: string, message: string): void => void errors.push({ ackToken: st.ackToken, code, message });
          const payload = settlementPayload(st.kind, st.delayMs);
          if (payload === undefined) return refuse("FABRIC_ERR_INVALID_INPUT", "kind must be ACK, NACK, IN_PROGRESS or TERMINATE");
          const reply = s.tokens.open(caller.publicKey, st.ackToken);
          if (reply === undefined) return refuse("FABRIC_ERR_TOKEN_INVALID", "not an ack token this gateway issued to this caller (Fetch tokens hold at the gateway that issued them, while it runs)");
          const x = s.attempts.byReply(reply);
          const why = x === undefined ? "this delivery was settled already, was redelivered since, or its lease ended" : s.attempts.staleness(x);
          if (x === undefined || why !== undefined) return refuse("FABRIC_ERR_STALE_TOKEN", why ?? "stale");
          // claimed before the round trip: two settlements of one attempt cannot both apply
          if (st.kind === Settlement_Kind.KIND_IN_PROGRESS) s.attempts.extend(x);
          else s.attempts.settle(x);
          try {
            await s.nc.request(x.reply, payload, { timeout });
          } catch (err) {
            // not confirmed: if it was lost, the message comes back when the lease ends
            refuse("FABRIC_ERR_UNAVAILABLE", `JetStream did not confirm the settlement: ${errorMessage(err)}`);
          }
        }),
      );
      return { errors };
    }),
  };
}

