import { AckPolicy, jetstream, type ConsumerConfig, type JetStreamManager, type JsMsg } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { TimeoutError } from "../core/index.js";

/** The most messages one fetch of a range read asks for. */
const RANGE_BATCH = 1_000;
/** A range read's consumer is reclaimed this long after its reader vanished (it is deleted when the read ends). */
const RANGE_INACTIVE_MS = 30_000;
const ms2ns = (ms: number): number => ms * 1_000_000;

/**
 * Reads what `stream` holds on `filter` from a start position, as it stands when the read begins: an ephemeral
 * consumer without acks tells how many messages match (num_pending), and exactly that many are fetched, so the
 * read ends as soon as they are in, never waiting out a fetch's expiry. `onMessage` returns true to stop early.
 * Past `deadline` (epoch ms) it throws FABRIC_ERR_TIMEOUT.
 */
export async function readRange(
  nc: NatsConnection,
  jsm: JetStreamManager,
  range: { stream: string; filter: string; start: Pick<ConsumerConfig, "deliver_policy"> & Partial<Pick<ConsumerConfig, "opt_start_time" | "opt_start_seq">>; deadline: number },
  onMessage: (m: JsMsg) => boolean,
): Promise<void> {
  const ci = await jsm.consumers.add(range.stream, { description: "gateway range reader", ack_policy: AckPolicy.None, filter_subject: range.filter, ...range.start, inactive_threshold: ms2ns(RANGE_INACTIVE_MS), mem_storage: true, num_replicas: 1 });
  try {
    let remaining = ci.num_pending;
    const c = await jetstream(nc).consumers.get(range.stream, ci.name);
    while (remaining > 0) {
      const left = range.deadline - Date.now();
      if (left <= 0) throw new TimeoutError(`reading ${range.stream} (${range.filter}) took longer than the call's deadline`);
      let got = 0;
      for await (const m of await c.fetch({ max_messages: Math.min(RANGE_BATCH, remaining), expires: Math.max(1_000, Math.min(left, 30_000)) })) {
        got++;
        remaining--;
        if (onMessage(m)) return;
      }
      if (got === 0) return; // what was counted is gone (limits, purge): nothing more to read
    }
  } finally {
    void jsm.consumers.delete(range.stream, ci.name).catch(() => undefined);
  }
}
