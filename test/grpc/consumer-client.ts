import type { ClientDuplexStream, Metadata, ServiceError } from "@grpc/grpc-js";
import {
  ConsumerServiceService,
  Settlement_Kind,
  type ConsumeRequest,
  type ConsumeResponse,
  type ConsumerServiceClient,
  type Delivery,
  type FetchRequest,
  type FetchResponse,
  type Heartbeat,
  type Open,
  type SettleError,
  type SettleRequest,
  type SettleResponse,
} from "../../proto/gen/fabric/v1/consumer.js";
import { pollUntil } from "../../fabric/core/index.js";
import { authFor } from "../harness/index.js";

/** What the ConsumerService tests share: a Consume call as a test sees it, and unary helpers. */
export const PATHS = ConsumerServiceService;

export const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);
export const seqOf = (d: Delivery): number => d.event?.sequence ?? -1;
export const byNumber = (x: number, y: number): number => x - y;

/** A Consume call as a test sees it: everything received, with the credit granted so far. */
export class Consume {
  readonly call: ClientDuplexStream<ConsumeRequest, ConsumeResponse>;
  readonly deliveries: { d: Delivery; at: number }[] = [];
  readonly heartbeats: { hb: Heartbeat; at: number; delivered: number }[] = [];
  readonly settleErrors: SettleError[] = [];
  opened: string | undefined;
  error: ServiceError | undefined;
  ended = false;
  granted = 0;
  /** Deliveries beyond the credit granted at the time: must stay 0 (credit mode). */
  overCredit = 0;
  /** Settlements sent that end a delivery (ack, nack, terminate), and the most deliveries ever unsettled. */
  settled = 0;
  maxOutstanding = 0;

  constructor(c: ConsumerServiceClient, who: string, options: { md?: Metadata; deadline?: number } = {}) {
    this.call = c.consume(options.md ?? authFor(who, PATHS.consume.path), options.deadline === undefined ? {} : { deadline: options.deadline });
    this.call.on("data", (r: ConsumeResponse) => {
      const f = r.frame;
      if (f?.$case === "opened") this.opened = f.value.consumer;
      else if (f?.$case === "deliveries") {
        for (const d of f.value.deliveries) {
          this.deliveries.push({ d, at: Date.now() });
          if (this.deliveries.length > this.granted) this.overCredit++;
        }
        this.maxOutstanding = Math.max(this.maxOutstanding, this.deliveries.length - this.settled);
      } else if (f?.$case === "heartbeat") this.heartbeats.push({ hb: f.value, at: Date.now(), delivered: this.deliveries.length });
      else if (f?.$case === "settleError") this.settleErrors.push(f.value);
    });
    this.call.on("error", (e: ServiceError) => {
      this.error = e;
      this.ended = true;
    });
    this.call.on("end", () => {
      this.ended = true;
    });
  }

  open(o: Partial<Open>): this {
    this.call.write({
      frame: { $case: "open", value: { stream: "TELEMETRY", durable: "", filterSubjects: [], maxMessagesInFlight: 0, maxBytesInFlight: 0, ackWaitMs: 0, flowControl: 0, maxLeaseExtensionMs: 0, maxDeliveries: 0, ...o } },
    });
    return this;
  }

  async opening(): Promise<string> {
    return pollUntil(() => this.opened ?? (this.error === undefined ? undefined : Promise.reject(this.error)), { what: "the opened frame" });
  }

  credit(messages: number): void {
    this.granted += messages;
    this.call.write({ frame: { $case: "credit", value: { messages, bytes: 0 } } });
  }

  settle(d: Delivery | string, kind: Settlement_Kind, delayMs = 0): void {
    if (kind !== Settlement_Kind.KIND_IN_PROGRESS) this.settled++;
    this.call.write({ frame: { $case: "settle", value: { settlements: [{ ackToken: typeof d === "string" ? d : d.ackToken, kind, delayMs }] } } });
  }

  /** Acks in one frame, as a client settling what it processed together would. */
  ack(ds: Delivery[]): void {
    this.settled += ds.length;
    this.call.write({ frame: { $case: "settle", value: { settlements: ds.map((d) => ({ ackToken: d.ackToken, kind: Settlement_Kind.KIND_ACK, delayMs: 0 })) } } });
  }

  received(): Delivery[] {
    return this.deliveries.map((x) => x.d);
  }

  async count(n: number, what = `${n} deliveries`): Promise<void> {
    await pollUntil(() => this.deliveries.length >= n || (this.error !== undefined && Promise.reject(this.error)), { what });
  }

  /** The first heartbeat received after `from` (epoch ms) that satisfies `ok`. */
  async heartbeat(ok: (hb: Heartbeat) => boolean = () => true, from = Date.now(), what = "a heartbeat"): Promise<Heartbeat> {
    return pollUntil(() => this.heartbeats.find((x) => x.at >= from && ok(x.hb))?.hb ?? (this.error === undefined ? undefined : Promise.reject(this.error)), { what });
  }

  async ending(): Promise<ServiceError | undefined> {
    await pollUntil(() => this.ended, { what: "the end of the Consume call" });
    return this.error;
  }
}

export function unary<Req, Res>(
  fn: (req: Req, md: Metadata, opts: { deadline?: number }, cb: (err: ServiceError | null, res: Res) => void) => unknown,
  req: Req,
  md: Metadata,
  deadline?: number,
): Promise<Res> {
  return new Promise((resolve, reject) => {
    fn(req, md, deadline === undefined ? {} : { deadline }, (err, res) => (err === null ? resolve(res) : reject(err)));
  });
}

export function fetchMsgs(c: ConsumerServiceClient, who: string, req: Partial<FetchRequest>, deadline?: number, md?: Metadata): Promise<FetchResponse> {
  const full: FetchRequest = { stream: "TELEMETRY", durable: "", filterSubjects: [], maxMessages: 0, waitMs: 0, ackWaitMs: 0, maxDeliveries: 0, ...req };
  return unary(c.fetch.bind(c), full, md ?? authFor(who, PATHS.fetch.path), deadline);
}

export function settle(c: ConsumerServiceClient, who: string, settlements: SettleRequest["settlements"]): Promise<SettleResponse> {
  return unary(c.settle.bind(c), { settlements }, authFor(who, PATHS.settle.path));
}

export async function refused(p: Promise<unknown>): Promise<ServiceError> {
  try {
    await p;
  } catch (err) {
    return err as ServiceError;
  }
  throw new Error("the call succeeded but should have been refused");
}
