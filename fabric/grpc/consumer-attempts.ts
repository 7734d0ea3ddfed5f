import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import type { MsgHdrs } from "@nats-io/transport-node";
import { Settlement_Kind } from "../../proto/gen/fabric/v1/consumer.js";
import type { Event } from "../../proto/gen/fabric/v1/event.js";
import { endSpan, messagingAttributes, parseAckSubject, SPAN, SpanKind, startChildSpan, TRACEPARENT, tracingEnabled, type AckSubject } from "../core/index.js";

/** What a JetStream ack subject (a delivery's reply subject) says about that delivery attempt. */
/** One delivery attempt handed to a client, until it is settled, superseded by a redelivery, or its lease ends. */
export interface Attempt {
  /** The message within its consumer, whatever the attempt: its consumer's attempts, and its stream sequence. */
  readonly group: Map<number, Attempt>;
  readonly seq: number;
  /** The JetStream ack subject of this very attempt (settling publishes to it). */
  readonly reply: string;
  readonly attempt: number;
  readonly ackWaitMs: number;
  /** Bytes as JetStream counts them for max_bytes (subject, ack subject, headers and data). */
  readonly size: number;
  /** When the gateway handed it out (epoch ms). */
  readonly deliveredAt: number;
  /** The consumer's max_deliver when its messages go to DEAD_LETTER after it, else 0. */
  readonly deadLetterAfter: number;
  /** The gateway's view of when JetStream redelivers it: the delivery's arrival (or the last in-progress) plus ack wait. */
  leaseUntil: number;
  settled: boolean;
}

/** How long before the lease's end a settlement is no longer trusted to reach JetStream in time. */
export function leaseMargin(ackWaitMs: number): number {
  return Math.min(1_000, Math.max(20, Math.floor(ackWaitMs / 20)));
}

const SWEEP_EVERY_MS = 5_000;

/**
 * The latest attempt the gateway handed out per message (stream, consumer, stream sequence), shared by every
 * Consume stream and Fetch of this gateway. JetStream itself accepts an ack on the reply subject of an earlier
 * attempt of a message that was since redelivered (it acks whatever attempt is pending) and silently ignores
 * acks of settled messages, so staleness is decided here: a token is current only while its attempt is the
 * latest one handed out for that message, is not settled, and its lease has not ended (JetStream redelivers
 * only after the lease ends, or after a nak/term that went through this gateway, since tokens are valid only at
 * the gateway that issued them). A message redelivered through another gateway is therefore covered by the
 * lease rule. Settling near the lease's end (leaseMargin) is refused too: conservative, the message comes back.
 */
export class Attempts {
  /** Per consumer (`<stream>.<consumer>`), the latest attempt per stream sequence (numeric keys: per delivery). */
  private readonly groups = new Map<string, Map<number, Attempt>>();
  private last: { stream: string; consumer: string; group: Map<number, Attempt> } | undefined;
  private lastSweep = 0;

  private group(stream: string, consumer: string): Map<number, Attempt> {
    const l = this.last;
    if (l !== undefined && l.stream === stream && l.consumer === consumer) return l.group;
    const key = `${stream}.${consumer}`;
    let group = this.groups.get(key);
    if (group === undefined) {
      group = new Map();
      this.groups.set(key, group);
    }
    this.last = { stream, consumer, group };
    return group;
  }

  record(reply: string, a: AckSubject, ackWaitMs: number, size: number, now = Date.now(), deadLetterAfter = 0): Attempt {
    this.sweep(now);
    const group = this.group(a.stream, a.consumer);
    const x: Attempt = { group, seq: a.streamSeq, reply, attempt: a.attempt, ackWaitMs, size, deliveredAt: now, deadLetterAfter, leaseUntil: now + ackWaitMs, settled: false };
    group.set(x.seq, x); // a redelivery supersedes the earlier attempt
    return x;
  }

  /** Why `x` may no longer be settled, or undefined when it may. */
  staleness(x: Attempt, now = Date.now()): string | undefined {
    if (x.settled) return "this delivery was settled already";
    if (x.group.get(x.seq) !== x) return "the message was redelivered since (or its lease ended)";
    if (now >= x.leaseUntil - leaseMargin(x.ackWaitMs)) return "the delivery's lease ended: the message is due for redelivery";
    return undefined;
  }

  /** The attempt whose ack subject is `reply`, while it is the latest of its message. */
  byReply(reply: string): Attempt | undefined {
    const a = parseAckSubject(reply);
    if (a === undefined) return undefined;
    const x = this.groups.get(`${a.stream}.${a.consumer}`)?.get(a.streamSeq);
    return x?.reply === reply ? x : undefined;
  }

  /** In progress: the lease starts again (JetStream restarts its ack wait on +WPI). */
  extend(x: Attempt, now = Date.now()): void {
    x.leaseUntil = now + x.ackWaitMs;
  }

  settle(x: Attempt): void {
    x.settled = true;
    if (x.group.get(x.seq) === x) x.group.delete(x.seq);
  }

  /** Forgets attempts whose lease ended (lazily, at most every few seconds). */
  private sweep(now: number): void {
    if (now - this.lastSweep < SWEEP_EVERY_MS) return;
    this.lastSweep = now;
    for (const [key, g] of this.groups) {
      for (const [seq, x] of g) if (now >= x.leaseUntil) g.delete(seq);
      if (g.size === 0 && this.last?.group !== g) this.groups.delete(key);
    }
  }
}

/** JetStream's ack protocol payloads, encoded once (they go out for every settlement). */
const ACK = Buffer.from("+ACK");
export const WPI = Buffer.from("+WPI");
export const TERM = Buffer.from("+TERM");
export const NAK = Buffer.from("-NAK");

/** Whether settling `x` with `kind` is a nak at its last allowed delivery (the message goes to DEAD_LETTER). */
export function isLastNak(x: Attempt, kind: Settlement_Kind): boolean {
  return kind === Settlement_Kind.KIND_NACK && x.deadLetterAfter > 0 && x.attempt >= x.deadLetterAfter;
}

/** What settling publishes to an attempt's ack subject (JetStream's ack protocol), or undefined for no settlement. */
export function settlementPayload(kind: Settlement_Kind, delayMs: number): Uint8Array | undefined {
  switch (kind) {
    case Settlement_Kind.KIND_ACK:
      return ACK;
    case Settlement_Kind.KIND_NACK:
      return delayMs > 0 ? Buffer.from(`-NAK ${JSON.stringify({ delay: delayMs * 1_000_000 })}`) : NAK;
    case Settlement_Kind.KIND_IN_PROGRESS:
      return WPI;
    case Settlement_Kind.KIND_TERMINATE:
      return TERM;
    default:
      return undefined;
  }
}

/**
 * Fetch's ack tokens: `<base64url(ack subject)>.<base64url(HMAC-SHA256)>`, the MAC keyed by a secret of this
 * gateway process over the caller's public key and the ack subject. Nobody can forge one or settle another
 * caller's; a token outlives neither the gateway process nor (Attempts) its attempt.
 */
export class FetchTokens {
  private readonly secret = randomBytes(32);

  sign(callerKey: string, reply: string): string {
    return `${Buffer.from(reply, "utf8").toString("base64url")}.${this.mac(callerKey, reply).toString("base64url")}`;
  }

  /** The ack subject of a token issued to `callerKey` by this gateway, or undefined. */
  open(callerKey: string, token: string): string | undefined {
    const m = /^([A-Za-z0-9_-]{1,1024})\.([A-Za-z0-9_-]{43})$/.exec(token);
    if (m === null) return undefined;
    const reply = Buffer.from(m[1] ?? "", "base64url").toString("utf8");
    const mac = Buffer.from(m[2] ?? "", "base64url");
    const want = this.mac(callerKey, reply);
    return mac.length === want.length && timingSafeEqual(mac, want) ? reply : undefined;
  }

  private mac(callerKey: string, reply: string): Buffer {
    return createHmac("sha256", this.secret).update(`fabric.v1.ConsumerService fetch token\n${callerKey}\n${reply}`, "utf8").digest();
  }
}

/** Payloads up to this size are looked into for an event time. */
const MAX_EVENT_TIME_PARSE = 64 * 1024;

/** The payload's numeric `ts` (epoch ms) when it is a JSON object with one, else 0. */
export function eventTimeOf(data: Uint8Array): number {
  if (data.length === 0 || data.length > MAX_EVENT_TIME_PARSE) return 0;
  let i = 0;
  while (i < data.length && (data[i] === 0x20 || data[i] === 0x09 || data[i] === 0x0a || data[i] === 0x0d)) i++;
  if (data[i] !== 0x7b) return 0; // '{'
  try {
    const body: unknown = JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("utf8"));
    const ts = typeof body === "object" && body !== null ? (body as Record<string, unknown>)["ts"] : undefined;
    const ms = typeof ts === "number" ? Math.trunc(ts) : 0;
    return Number.isSafeInteger(ms) ? ms : 0;
  } catch {
    return 0;
  }
}

/** A stored message as a fabric.v1 Event (a repeated header keeps its last value). */
/** Shared by every event without headers (encoding only reads it). */
const NO_HEADERS: Readonly<Record<string, string>> = Object.freeze({});

export function toEvent(stream: string, sequence: number, subject: string, hdrs: MsgHdrs | undefined, storedAtMs: number, data: Uint8Array): Event {
  const headers = hdrs === undefined ? NO_HEADERS : headersOf(hdrs);
  if (tracingEnabled() && headers !== NO_HEADERS) traceDelivery(headers, stream, sequence, subject);
  return { stream, sequence, subject, headers, storedAtMs, eventTimeMs: eventTimeOf(data), data: Buffer.from(data.buffer, data.byteOffset, data.byteLength) };
}

/**
 * Tracing on: a `grpc deliver` span, child of the stored traceparent, and the event carries the span's own
 * traceparent (the consumer's work is its child). The span covers the hand-over to the gRPC stream.
 */
function traceDelivery(headers: Record<string, string>, stream: string, sequence: number, subject: string): void {
  const child = startChildSpan(SPAN.grpcDeliver, headers[TRACEPARENT], { ...messagingAttributes(subject), "messaging.operation.type": "receive", "fabric.stream": stream, "fabric.sequence": sequence }, SpanKind.CONSUMER);
  if (child === undefined) return;
  headers[TRACEPARENT] = child.traceparent;
  endSpan(child.span);
}

/** NATS headers as a map (a repeated header keeps its last value). */
function headersOf(hdrs: MsgHdrs): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const k of hdrs.keys()) {
    const v = hdrs.values(k);
    const last = v[v.length - 1];
    if (last !== undefined) headers[k] = last;
  }
  return headers;
}
