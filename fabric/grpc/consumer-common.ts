import type { JetStreamManager } from "@nats-io/jetstream";
import type { Msg, NatsConnection } from "@nats-io/transport-node";
import type { Delivery } from "../../proto/gen/fabric/v1/consumer.js";
import type { AckSubject } from "../core/index.js";
import { toEvent, type Attempts, type FetchTokens } from "./consumer-attempts.js";
import type { DeadLetters } from "./consumer-dead-letter.js";
import type { GatewayContext } from "./context.js";

/** What every call of the consumer service shares. */
export interface Shared {
  ctx: GatewayContext;
  nc: NatsConnection;
  attempts: Attempts;
  tokens: FetchTokens;
  deadLetters: DeadLetters;
  jsm(): Promise<JetStreamManager>;
}

export const ms2ns = (ms: number): number => ms * 1_000_000;

export function pullSubject(stream: string, consumer: string): string {
  return `$JS.API.CONSUMER.MSG.NEXT.${stream}.${consumer}`;
}

/** A status message of a pull request (no ack subject): its code and description. */
export function statusOf(m: Msg): { code: number; description: string } {
  return { code: m.headers?.code ?? 0, description: m.headers?.description ?? "" };
}

export function deliveryOf(stream: string, m: Msg, a: AckSubject, token: string, leaseUntil: number): Delivery {
  return { ackToken: token, attempt: a.attempt, leaseExpiresAtMs: leaseUntil, event: toEvent(stream, a.streamSeq, m.subject, m.headers, a.storedAtMs, m.data) };
}

/**
 * A delivery's size as JetStream counts it against a pull's max_bytes: subject, ack subject, headers and data
 * (nats.js's Msg has it at run time, not in its type; without it, headers are not counted).
 */
export function sizeOf(m: Msg): number {
  const size = (m as Msg & { size?: () => number }).size;
  return typeof size === "function" ? size.call(m) : m.subject.length + (m.reply ?? "").length + m.data.length;
}

/** Publishes, unless the connection is closed or draining (then JetStream redelivers after the lease). */
export function publishQuietly(nc: NatsConnection, subject: string, payload: Uint8Array): void {
  try {
    nc.publish(subject, payload);
  } catch {
    // the lease runs out instead
  }
}
