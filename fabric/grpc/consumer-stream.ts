import { randomBytes } from "node:crypto";
import { createInbox, type Msg, type Subscription } from "@nats-io/transport-node";
import type { ServerDuplexStream, ServiceError } from "@grpc/grpc-js";
import {
  ConsumerServiceService,
  FlowControl,
  Settlement_Kind,
  type ConsumeRequest,
  type ConsumeResponse,
  type Credit,
  type Delivery,
  type Open,
  type Settlement,
} from "../../proto/gen/fabric/v1/consumer.js";
import { emptyAckSubject, errorMessage, InvalidInputError, readAckSubject } from "../core/index.js";
import type { Caller } from "./auth.js";
import { isLastNak, leaseMargin, NAK, settlementPayload, TERM, WPI, type Attempt } from "./consumer-attempts.js";
import { deliveryOf, ms2ns, publishQuietly, pullSubject, sizeOf, statusOf, type Shared } from "./consumer-common.js";
import { deadLetterCap } from "./consumer-dead-letter.js";
import { assertFilters, resolveFilters } from "./consumer-filters.js";
import { ackWaitMsOf, ackWaitOf, assertDurableName, assertStreamName, deliverPolicyOf, ensureConsumer, leaseExtensionOf, maxDeliveriesOf, maxInFlightOf, streamSubjects } from "./consumer-setup.js";
import { callerOf } from "./context.js";
import { GatewayError, toServiceError } from "./errors.js";
import { consumeMetrics } from "./metrics.js";

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
/** Settlements of one frame applied per event-loop turn. */
const SETTLE_CHUNK = 10_000;

/** How often leases are looked at in window mode or with automatic extension: a tenth of the ack wait, 50 ms to 1 s. */
function leaseTickMs(ackWaitMs: number): number {
  return Math.min(1_000, Math.max(50, Math.floor(ackWaitMs / 10)));
}

/** An automatic renewal is due once this little of the lease is left: a third of it, and well over a tick plus the settle margin. */
function renewMargin(ackWaitMs: number): number {
  return Math.max(Math.floor(ackWaitMs / 3), leaseMargin(ackWaitMs) + 2 * leaseTickMs(ackWaitMs));
}

function flowControlOf(f: FlowControl): FlowControl {
  if (f === FlowControl.FLOW_CONTROL_UNSPECIFIED || f === FlowControl.FLOW_CONTROL_CREDITS) return FlowControl.FLOW_CONTROL_CREDITS;
  if (f === FlowControl.FLOW_CONTROL_WINDOW) return f;
  throw new InvalidInputError("open.flow_control must be CREDITS or WINDOW");
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
 * One Consume call. Credits (or, in window mode, the room left in the in-flight caps) map onto JetStream pull
 * requests: the pulls outstanding never ask for more than the credit not yet covered by other pulls (nor for
 * more bytes, with byte credits or a byte cap), so JetStream never hands the gateway more than the client
 * allowed and nothing is buffered beyond credit. Each pull has its own inbox, unsubscribed when the pull ends
 * (JetStream drops a waiting pull whose inbox lost interest). In window mode, settlements and leases that ran
 * out (looked at every lease tick) make room; with automatic lease extension the same tick renews leases.
 *
 * Tokens are random ids mapped to the attempt in this stream only (Attempts decides staleness: settled,
 * redelivered since, or lease ended); settlements publish JetStream's ack protocol to the attempt's ack subject
 * (a nak at the last delivery of a dead-lettering consumer goes to DeadLetters instead).
 *
 * At close (half-close, cancel, deadline, revocation, shutdown) the gateway stops pulling (unsubscribing the
 * pulls' inboxes makes JetStream drop the waiting pulls) and naks the deliveries not settled yet without delay,
 * so they come back at once (to a reconnecting client or another consumer of the durable) rather than after
 * the ack wait: the client can no longer settle them on this stream. Messages in transit at that moment come
 * back after the ack wait. An ephemeral consumer is deleted instead.
 */
export class ConsumeStream {
  private caller: Caller | undefined;
  private opened = false;
  private closed = false;
  private stream = "";
  private consumer = "";
  private ephemeral = false;
  private ackWaitMs = 0;
  private maxInFlight = 0;
  private maxBytesInFlight = 0;
  /** FLOW_CONTROL_WINDOW: no credits, the in-flight caps are the window. */
  private window = false;
  /** Automatic lease renewal up to this long after delivery (0: off; only when longer than the ack wait). */
  private leaseExtensionMs = 0;
  /** The consumer's max_deliver when its messages go to DEAD_LETTER, else 0. */
  private deadLetterAfter = 0;
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
  private leaseTimer: NodeJS.Timeout | undefined;
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
        await this.settleAll(f.value.settlements);
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
    const asked = assertFilters(caller, o.filterSubjects, "open.filter_subjects");
    ackWaitOf(o.ackWaitMs, "open.ack_wait_ms");
    this.maxInFlight = maxInFlightOf(o.maxMessagesInFlight, "open.max_messages_in_flight");
    deliverPolicyOf(o.start, "open.start");
    this.window = flowControlOf(o.flowControl) === FlowControl.FLOW_CONTROL_WINDOW;
    const extension = leaseExtensionOf(o.maxLeaseExtensionMs, "open.max_lease_extension_ms");
    maxDeliveriesOf(o.maxDeliveries, "open.max_deliveries");
    this.maxBytesInFlight = o.maxBytesInFlight;
    const jsm = await this.s.jsm();
    const filters = resolveFilters(caller, asked, o.stream, await streamSubjects(jsm, o.stream), "open.filter_subjects");
    const info = await ensureConsumer(jsm, { stream: o.stream, durable: o.durable, filters, start: o.start, ackWaitMs: o.ackWaitMs, maxInFlight: o.maxMessagesInFlight, maxDeliveries: o.maxDeliveries });
    this.stream = o.stream;
    this.consumer = info.name;
    this.ephemeral = o.durable === "";
    this.ackWaitMs = ackWaitMsOf(info);
    this.leaseExtensionMs = extension > this.ackWaitMs ? extension : 0;
    this.deadLetterAfter = deadLetterCap(info);
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
    if (this.window || this.leaseExtensionMs > 0) {
      // leases that run out make room in a window, and renewals are due before a lease ends: sooner than heartbeats
      this.leaseTimer = setInterval(() => this.onLeaseTick(), leaseTickMs(this.ackWaitMs));
      this.leaseTimer.unref();
    }
    this.refill();
  }

  private onLeaseTick(): void {
    if (this.closed || !this.opened) return;
    const now = Date.now();
    if (this.leaseExtensionMs > 0) this.renewLeases(now);
    const before = this.tokens.size;
    this.expireLeases(now);
    if (this.tokens.size < before) this.refill();
  }

  /**
   * Automatic lease extension: an unsettled delivery's lease is renewed (+WPI) once less than renewMargin of it
   * is left, and last so that it ends leaseExtensionMs after delivery (the end its Delivery announced).
   */
  private renewLeases(now: number): void {
    const r = renewMargin(this.ackWaitMs);
    for (const x of this.tokens.values()) {
      const end = x.deliveredAt + this.leaseExtensionMs;
      if (x.leaseUntil >= end || x.settled) continue;
      if (now < Math.min(x.leaseUntil - r, end - x.ackWaitMs)) continue;
      if (this.s.attempts.staleness(x, now) !== undefined) continue; // redelivered, or too late: let it go
      publishQuietly(this.s.nc, x.reply, WPI);
      this.s.attempts.extend(x, now);
    }
  }

  private credit(c: Credit): void {
    if (this.window) throw new InvalidInputError("credit: this stream was opened with flow_control WINDOW, which takes no credits (settling makes room)");
    if (this.byteMode === undefined) this.byteMode = c.bytes > 0;
    else if (!this.byteMode && c.bytes > 0) throw new InvalidInputError("credit.bytes: byte credits must be given from the first credit frame on (this stream counts messages only)");
    this.creditMsgs = Math.min(MAX_CREDIT_MESSAGES, this.creditMsgs + c.messages);
    if (this.byteMode) this.creditBytes = Math.min(Number.MAX_SAFE_INTEGER, this.creditBytes + c.bytes);
    if (c.bytes > 0) this.stalled = false;
    this.refill();
  }

  private refuse(ackToken: string, code: string, message: string): void {
    this.settleCounts[0] = (this.settleCounts[0] ?? 0) + 1;
    this.send({ frame: { $case: "settleError", value: { ackToken, code, message } } });
  }

  /**
   * A frame's settlements, all of them, in order: refused ones come back as SettleError and the stream goes on
   * (a frame is bounded by the transport's message limit). Large frames yield to the event loop between chunks.
   */
  private async settleAll(settlements: readonly Settlement[]): Promise<void> {
    for (let i = 0; i < settlements.length; i += SETTLE_CHUNK) {
      if (i > 0) {
        this.refill();
        await new Promise<void>((resolve) => setImmediate(resolve));
        if (this.closed) return;
      }
      const end = Math.min(settlements.length, i + SETTLE_CHUNK);
      for (let k = i; k < end; k++) this.settle(settlements[k] as Settlement);
      consumeMetrics.settled(this.settleCounts);
    }
    this.refill(); // once per frame (chunk): settlements freed room for more in flight
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
    this.settleCounts[st.kind] = (this.settleCounts[st.kind] ?? 0) + 1;
    if (st.kind === Settlement_Kind.KIND_IN_PROGRESS) {
      publishQuietly(this.s.nc, x.reply, payload);
      this.s.attempts.extend(x);
      return;
    }
    if (isLastNak(x, st.kind)) {
      const dl = { stream: this.stream, consumer: this.consumer, seq: x.seq, deliveries: x.attempt, reason: "nak'ed at the last allowed delivery" };
      this.s.deadLetters.divert(dl, x.reply, TERM, payload);
    } else {
      publishQuietly(this.s.nc, x.reply, payload);
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
      const credit = this.window ? Infinity : this.creditMsgs - coveredMsgs;
      const batch = Math.min(credit, this.maxInFlight - this.tokens.size - coveredMsgs, MAX_PULL_BATCH);
      if (batch <= 0) return;
      let maxBytes = Infinity;
      if (this.byteMode === true) maxBytes = this.creditBytes - coveredBytes;
      if (this.maxBytesInFlight > 0) {
        maxBytes = Math.min(maxBytes, this.maxBytesInFlight - this.bytesInFlight() - coveredBytes);
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
      if (!this.window) this.creditMsgs--;
      if (this.byteMode === true) this.creditBytes = Math.max(0, this.creditBytes - size);
      const now = Date.now();
      const x = this.s.attempts.record(reply, a, this.ackWaitMs, size, now, this.deadLetterAfter);
      if (a.attempt > 1) this.redeliveredInBatch++;
      // valid on this stream only (its own map): a random prefix and a counter, no random bytes per delivery
      const token = `${this.tokenPrefix}${(++this.tokenSeq).toString(36)}`;
      this.tokens.set(token, x);
      this.pending = a.pending;
      this.deliver(deliveryOf(this.stream, m, a, token, this.leaseExtensionMs > 0 ? now + this.leaseExtensionMs : x.leaseUntil));
      if (!this.window && this.creditMsgs === 0) void this.heartbeat(); // idle until the client grants more
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
    let creditMessages = this.creditMsgs;
    let creditBytes = this.byteMode === true ? this.creditBytes : 0;
    if (this.window) {
      // the room left in the window
      creditMessages = Math.max(0, this.maxInFlight - this.tokens.size);
      creditBytes = this.maxBytesInFlight > 0 ? Math.max(0, this.maxBytesInFlight - this.bytesInFlight()) : 0;
    }
    this.send({ frame: { $case: "heartbeat", value: { pending: this.pending, ackPending: this.ackPending, creditMessages, creditBytes } } });
  }

  private bytesInFlight(): number {
    let n = 0;
    for (const x of this.tokens.values()) n += x.size;
    return n;
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
  /** Settlements of the frame being applied, by kind (index 0: refused), added to the metrics per chunk. */
  private readonly settleCounts: number[] = [0, 0, 0, 0, 0];
  /** Redeliveries among the deliveries of the batch being gathered. */
  private redeliveredInBatch = 0;

  private deliver(d: Delivery): void {
    this.batch.push(d);
    if (this.batch.length === 1) queueMicrotask(() => this.flush());
  }

  private flush(): void {
    if (this.batch.length === 0) return;
    const deliveries = this.batch;
    this.batch = [];
    if (this.closed || this.call.cancelled) return;
    consumeMetrics.delivered(this.stream, deliveries.length, this.redeliveredInBatch);
    this.redeliveredInBatch = 0;
    this.call.write({ frame: { $case: "deliveries", value: { deliveries } } });
  }

  /** Ends the call once: OK without `err`; nothing is written after a cancel. */
  private end(err?: Partial<ServiceError>): void {
    if (this.closed) return;
    this.closed = true;
    for (const c of this.cleanups.splice(0)) c();
    clearInterval(this.heartbeatTimer);
    clearInterval(this.leaseTimer);
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
