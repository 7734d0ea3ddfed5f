import { jetstream } from "@nats-io/jetstream";
import { createInbox, type Msg, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import { ConsumerServiceService, Settlement_Kind, type ConsumerServiceServer, type SettleError } from "../../proto/gen/fabric/v1/consumer.js";
import { errorMessage, InvalidInputError, parseAckSubject, type AckSubject } from "../core/index.js";
import { Attempts, FetchTokens, isLastNak, NAK, settlementPayload, TERM, toEvent } from "./consumer-attempts.js";
import { deliveryOf, ms2ns, publishQuietly, pullSubject, sizeOf, statusOf, type Shared } from "./consumer-common.js";
import { deadLetterCap, DeadLetters } from "./consumer-dead-letter.js";
import { assertFilters, resolveFilters } from "./consumer-filters.js";
import { ackWaitMsOf, ackWaitOf, assertDurableName, assertStreamName, deliverPolicyOf, ensureConsumer, maxDeliveriesOf, streamSubjects } from "./consumer-setup.js";
import { ConsumeStream } from "./consumer-stream.js";
import type { GatewayContext } from "./context.js";
import { GatewayError } from "./errors.js";
import { serverStream, timeLeft, unary, write } from "./handlers.js";

export { CONSUME_HEARTBEAT_MS } from "./consumer-stream.js";

const DEFAULT_FETCH_MESSAGES = 100;
const MAX_FETCH_MESSAGES = 1_000;
const DEFAULT_FETCH_WAIT_MS = 1_000;
const MAX_FETCH_WAIT_MS = 30_000;
/** A Fetch response stays well under the gateway's 4 MiB message limit. */
const FETCH_MAX_BYTES = 3 * 1024 * 1024;
const MAX_SETTLEMENTS = 1_000;
const SETTLE_CONFIRM_TIMEOUT_MS = 5_000;

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
  const s: Shared = { ctx, nc: ctx.nc, attempts: new Attempts(), tokens: new FetchTokens(), deadLetters: new DeadLetters(ctx.nc, ctx.publisher, ctx.jsm, ctx.logger), jsm: ctx.jsm };
  // the max-deliveries advisory also covers consumers whose gateway died: every gateway listens
  s.deadLetters.start();
  const js = jetstream(ctx.nc);

  return {
    consume: (call) => new ConsumeStream(s, call).start(),

    tail: serverStream(ctx, ConsumerServiceService.tail.path, async (req, caller, call, signal) => {
      assertStreamName(req.stream);
      const asked = assertFilters(caller, req.filterSubjects);
      const policy = deliverPolicyOf(req.start);
      const filters = resolveFilters(caller, asked, req.stream, await streamSubjects(await s.jsm(), req.stream));
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
      const asked = assertFilters(caller, req.filterSubjects);
      const batch = req.maxMessages === 0 ? DEFAULT_FETCH_MESSAGES : req.maxMessages;
      if (batch > MAX_FETCH_MESSAGES) throw new InvalidInputError(`max_messages must be at most ${MAX_FETCH_MESSAGES}`);
      if (req.waitMs > MAX_FETCH_WAIT_MS) throw new InvalidInputError(`wait_ms must be at most ${MAX_FETCH_WAIT_MS}`);
      ackWaitOf(req.ackWaitMs, "ack_wait_ms");
      maxDeliveriesOf(req.maxDeliveries, "max_deliveries");
      const jsm = await s.jsm();
      const filters = resolveFilters(caller, asked, req.stream, await streamSubjects(jsm, req.stream));
      const info = await ensureConsumer(jsm, { stream: req.stream, durable: req.durable, filters, start: undefined, ackWaitMs: req.ackWaitMs, maxInFlight: 0, maxDeliveries: req.maxDeliveries });
      const ackWaitMs = ackWaitMsOf(info);
      const deadLetterAfter = deadLetterCap(info);
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
        const x = s.attempts.record(reply, a, ackWaitMs, sizeOf(m), now, deadLetterAfter);
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
          if (isLastNak(x, st.kind)) {
            const a = parseAckSubject(x.reply);
            if (a !== undefined) {
              s.deadLetters.divert({ stream: a.stream, consumer: a.consumer, seq: x.seq, deliveries: x.attempt, reason: "nak'ed at the last allowed delivery" }, x.reply, TERM, payload);
              return;
            }
          }
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

