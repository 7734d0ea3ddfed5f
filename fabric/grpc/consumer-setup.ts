import { AckPolicy, DeliverPolicy, JetStreamApiCodes, JetStreamApiError, type ConsumerConfig, type ConsumerInfo, type JetStreamManager } from "@nats-io/jetstream";
import type { StartPosition } from "../../proto/gen/fabric/v1/consumer.js";
import { InvalidInputError } from "../core/index.js";
import { GatewayError } from "./errors.js";

/** A lease (ack wait) when the client asks for none, and its bounds. */
export const DEFAULT_ACK_WAIT_MS = 30_000;
const MIN_ACK_WAIT_MS = 100;
const MAX_ACK_WAIT_MS = 24 * 3_600_000;
/** In-flight messages (the consumer's max_ack_pending) when the client asks for no cap, and the largest cap. */
export const DEFAULT_MAX_IN_FLIGHT = 1_000;
const MAX_IN_FLIGHT = 100_000;
/** The most deliveries of a message a client may ask for (JetStream's max_deliver). */
const MAX_DELIVERIES = 1_000;
/** The longest automatic lease extension. */
const MAX_LEASE_EXTENSION_MS = 24 * 3_600_000;
/** Consumer metadata marking a consumer whose messages go to DEAD_LETTER after max_deliver. */
export const DEAD_LETTER_METADATA = "fabric_dead_letter";
/**
 * An ephemeral consumer is deleted when its stream closes; this threshold only reclaims those of a gateway that
 * died. It must outlast a client idling without credit (no pulls), hence generous.
 */
const EPHEMERAL_INACTIVE_MS = 5 * 60_000;

const NAME = /^[A-Za-z0-9_-]{1,128}$/;
const ms2ns = (ms: number): number => ms * 1_000_000;

export function assertStreamName(stream: string, field = "stream"): void {
  if (!NAME.test(stream)) throw new InvalidInputError(`${field} ${JSON.stringify(stream)} is not a stream name (1-128 of letters, digits, '_' and '-')`);
}

export function assertDurableName(durable: string, field = "durable"): void {
  if (!NAME.test(durable)) throw new InvalidInputError(`${field} ${JSON.stringify(durable)} is not a consumer name (1-128 of letters, digits, '_' and '-')`);
}

export function ackWaitOf(ms: number, field: string): number {
  if (ms === 0) return DEFAULT_ACK_WAIT_MS;
  if (ms < MIN_ACK_WAIT_MS || ms > MAX_ACK_WAIT_MS) throw new InvalidInputError(`${field} must be ${MIN_ACK_WAIT_MS} ms to ${MAX_ACK_WAIT_MS / 3_600_000} h (or 0 for ${DEFAULT_ACK_WAIT_MS / 1_000} s)`);
  return ms;
}

export function maxInFlightOf(n: number, field: string): number {
  if (n === 0) return DEFAULT_MAX_IN_FLIGHT;
  if (n > MAX_IN_FLIGHT) throw new InvalidInputError(`${field} must be at most ${MAX_IN_FLIGHT} (or 0 for ${DEFAULT_MAX_IN_FLIGHT})`);
  return n;
}

export function maxDeliveriesOf(n: number, field: string): number {
  if (n > MAX_DELIVERIES) throw new InvalidInputError(`${field} must be at most ${MAX_DELIVERIES} (or 0 for unlimited)`);
  return n;
}

export function leaseExtensionOf(ms: number, field: string): number {
  if (ms > MAX_LEASE_EXTENSION_MS) throw new InvalidInputError(`${field} must be at most ${MAX_LEASE_EXTENSION_MS / 3_600_000} h (or 0 for none)`);
  return ms;
}

/** A start position as JetStream's deliver policy; none means the whole stream (JetStream's default too). */
export function deliverPolicyOf(start: StartPosition | undefined, field = "start"): Pick<ConsumerConfig, "deliver_policy"> & Partial<Pick<ConsumerConfig, "opt_start_seq" | "opt_start_time">> {
  const p = start?.position;
  switch (p?.$case) {
    case undefined:
    case "all":
      return { deliver_policy: DeliverPolicy.All };
    case "new":
      return { deliver_policy: DeliverPolicy.New };
    case "lastPerSubject":
      return { deliver_policy: DeliverPolicy.LastPerSubject };
    case "sequence":
      if (p.value < 1) throw new InvalidInputError(`${field}.sequence must be at least 1`);
      return { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: p.value };
    case "timeMs":
      if (p.value <= 0 || p.value > 253_402_300_799_999) throw new InvalidInputError(`${field}.time_ms must be epoch milliseconds`);
      return { deliver_policy: DeliverPolicy.StartTime, opt_start_time: new Date(p.value).toISOString() };
  }
}

function isApiError(err: unknown, code: number): boolean {
  return err instanceof JetStreamApiError && err.code === code;
}

/** The stream's configured subjects; NOT_FOUND unless the stream exists. */
export async function streamSubjects(jsm: JetStreamManager, stream: string): Promise<string[]> {
  try {
    return [...((await jsm.streams.info(stream)).config.subjects ?? [])];
  } catch (err) {
    if (isApiError(err, JetStreamApiCodes.StreamNotFound)) throw new GatewayError("FABRIC_ERR_NOT_FOUND", `no stream ${stream}`);
    throw err;
  }
}

async function consumerInfo(jsm: JetStreamManager, stream: string, name: string): Promise<ConsumerInfo | undefined> {
  try {
    return await jsm.consumers.info(stream, name);
  } catch (err) {
    if (isApiError(err, JetStreamApiCodes.ConsumerNotFound)) return undefined;
    throw err;
  }
}

/** JetStream refusing a consumer's configuration (filters outside the stream, overlapping…) is the client's input. */
function refused(err: unknown, what: string): unknown {
  return err instanceof JetStreamApiError ? new InvalidInputError(`JetStream refused ${what}: ${err.message}`, { cause: err }) : err;
}

export function filtersOf(info: ConsumerInfo): string[] {
  const c = info.config;
  return c.filter_subjects !== undefined && c.filter_subjects.length > 0 ? [...c.filter_subjects] : c.filter_subject !== undefined && c.filter_subject !== "" ? [c.filter_subject] : [];
}

export interface ConsumerSpec {
  stream: string;
  /** Empty: an ephemeral consumer. */
  durable: string;
  filters: string[];
  start: StartPosition | undefined;
  /** The client's asks, 0 for the default (an existing durable keeps its own then). */
  ackWaitMs: number;
  maxInFlight: number;
  /** 0: unlimited (an existing durable keeps its own); else JetStream's max_deliver, with dead-lettering. */
  maxDeliveries: number;
}

/**
 * The pull consumer with explicit acks a Consume or Fetch reads: a durable is created on first use, reused
 * after (refused when its filters differ or it is not a pull consumer with explicit acks; its ack wait and
 * max_ack_pending are updated when the client asks for other ones); an ephemeral one is created each time.
 */
export async function ensureConsumer(jsm: JetStreamManager, spec: ConsumerSpec): Promise<ConsumerInfo> {
  const ackWait = ackWaitOf(spec.ackWaitMs, "ack_wait_ms");
  const maxAckPending = maxInFlightOf(spec.maxInFlight, "max_messages_in_flight");
  const config: Partial<ConsumerConfig> = {
    ack_policy: AckPolicy.Explicit,
    ack_wait: ms2ns(ackWait),
    max_ack_pending: maxAckPending,
    ...(spec.maxDeliveries > 0 ? { max_deliver: spec.maxDeliveries, metadata: { [DEAD_LETTER_METADATA]: "true" } } : {}),
    ...(spec.filters.length === 1 ? { filter_subject: spec.filters[0] } : { filter_subjects: spec.filters }),
    ...deliverPolicyOf(spec.start),
  };
  if (spec.durable === "") {
    try {
      return await jsm.consumers.add(spec.stream, { ...config, description: "gateway ephemeral consumer", inactive_threshold: ms2ns(Math.max(EPHEMERAL_INACTIVE_MS, 2 * ackWait)) });
    } catch (err) {
      throw refused(err, "the consumer");
    }
  }
  let info = await consumerInfo(jsm, spec.stream, spec.durable);
  if (info === undefined) {
    try {
      return await jsm.consumers.add(spec.stream, { ...config, durable_name: spec.durable });
    } catch (err) {
      // created meanwhile by another call (with another configuration): compare with that one below
      info = await consumerInfo(jsm, spec.stream, spec.durable);
      if (info === undefined) throw refused(err, `the durable consumer ${spec.durable}`);
    }
  }
  const c = info.config;
  if ((c.deliver_subject ?? "") !== "" || c.ack_policy !== AckPolicy.Explicit) {
    throw new GatewayError("FABRIC_ERR_FAILED_PRECONDITION", `durable ${spec.durable} of stream ${spec.stream} exists and is not a pull consumer with explicit acks`);
  }
  const have = filtersOf(info);
  if (have.length !== spec.filters.length || !spec.filters.every((f) => have.includes(f))) {
    throw new GatewayError("FABRIC_ERR_FAILED_PRECONDITION", `durable ${spec.durable} of stream ${spec.stream} exists with other filter subjects (${have.join(", ") || "none"}): use those, or another durable`);
  }
  const update: Partial<Pick<ConsumerConfig, "ack_wait" | "max_ack_pending" | "max_deliver" | "metadata">> = {};
  if (spec.ackWaitMs !== 0 && c.ack_wait !== ms2ns(ackWait)) update.ack_wait = ms2ns(ackWait);
  if (spec.maxInFlight !== 0 && c.max_ack_pending !== maxAckPending) update.max_ack_pending = maxAckPending;
  if (spec.maxDeliveries !== 0 && (c.max_deliver !== spec.maxDeliveries || c.metadata?.[DEAD_LETTER_METADATA] !== "true")) {
    update.max_deliver = spec.maxDeliveries;
    update.metadata = { ...c.metadata, [DEAD_LETTER_METADATA]: "true" };
  }
  if (Object.keys(update).length > 0) {
    try {
      info = await jsm.consumers.update(spec.stream, spec.durable, update);
    } catch (err) {
      throw refused(err, `the update of durable ${spec.durable}`);
    }
  }
  return info;
}

/** The lease JetStream gives a delivery of this consumer. */
export function ackWaitMsOf(info: ConsumerInfo): number {
  const ns = info.config.ack_wait;
  return typeof ns === "number" && ns > 0 ? Math.floor(ns / 1_000_000) : DEFAULT_ACK_WAIT_MS;
}
