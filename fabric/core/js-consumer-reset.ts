import type { NatsConnection } from "@nats-io/transport-node";
import { z } from "zod";
import { FabricError } from "./errors.js";

const resetReplySchema = z.looseObject({ error: z.looseObject({ description: z.string().optional() }).optional() });

/**
 * Resets a consumer's delivery state (`CONSUMER.RESET`, nats-server 2.14): to its ack floor, or with `seq` to
 * start again at that stream sequence (its ack floor becomes `seq - 1`). `api` is the JetStream API prefix:
 * `$JS.API` locally, `$JS.<domain>.API` across a leaf link; `reply`, a reply subject the answer may take (a
 * leaf's permissions let a site answer the hub on its own inboxes only).
 */
export async function resetConsumer(nc: NatsConnection, o: { api: string; stream: string; consumer: string; seq?: number; reply?: string; timeoutMs?: number }): Promise<void> {
  const body = o.seq === undefined ? "" : JSON.stringify({ seq: o.seq });
  const timeout = o.timeoutMs ?? 5_000;
  const m = await nc.request(`${o.api}.CONSUMER.RESET.${o.stream}.${o.consumer}`, body, o.reply === undefined ? { timeout } : { timeout, noMux: true, reply: o.reply });
  const r = resetReplySchema.parse(m.json());
  if (r.error !== undefined) {
    throw new FabricError("FABRIC_ERR_CONSUMER_RESET", `cannot reset consumer ${o.consumer} of ${o.stream} (${o.api}): ${r.error.description ?? "error"}`, { fields: { stream: o.stream, consumer: o.consumer } });
  }
}
