import { z } from "zod";

/**
 * `fabric status` shows a stream's consumers by purpose: durables by name (a service's, the operator's), the
 * consumers the fabric and its clients make and drop on their own (KV watches, ordered readers, ephemeral pull
 * consumers, one durable per MQTT session) counted per purpose, so an idle hub's dozens of `oc_…` consumers
 * are one line each kind.
 */

/** What a consumer's JSZ entry (`consumer_detail` with `config: true`) tells of it. */
export const consumerDetailSchema = z.looseObject({
  name: z.string(),
  num_pending: z.number().default(0),
  num_ack_pending: z.number().default(0),
  num_redelivered: z.number().default(0),
  config: z
    .looseObject({
      durable_name: z.string().optional(),
      description: z.string().optional(),
      headers_only: z.boolean().optional(),
    })
    .optional(),
});
export type ConsumerDetail = z.infer<typeof consumerDetailSchema>;

export interface NamedConsumer {
  name: string;
  pending: number;
  ackPending: number;
  redelivered: number;
}

export interface ConsumerGroup {
  purpose: string;
  count: number;
  /** Summed over the group's consumers. */
  pending: number;
  ackPending: number;
}

/** The MQTT ingress's session consumers (`mqtt_<client hash>_<stream>`, ingress/durable.ts). */
const MQTT_SESSION = /^mqtt_[0-9a-z]+_/;
/** nats.js names its ordered consumers (KV watch and keys, ordered readers) `oc_<nuid>_<n>`. */
const ORDERED = /^oc_/;

/** A consumer's purpose, or undefined for a durable shown by its name. */
export function consumerPurpose(stream: string, c: ConsumerDetail): string | undefined {
  const durable = c.config?.durable_name;
  if (durable !== undefined && durable !== "") return MQTT_SESSION.test(durable) ? "mqtt session" : undefined;
  const description = c.config?.description;
  if (description !== undefined && description !== "") return description;
  if (ORDERED.test(c.name)) {
    if (!stream.startsWith("KV_")) return "ordered reader";
    return c.config?.headers_only === true ? "kv keys (ordered)" : "kv watch (ordered)";
  }
  return "ephemeral";
}

/** Durables by name, the rest counted per purpose (both sorted). */
export function groupConsumers(stream: string, consumers: readonly ConsumerDetail[]): { named: NamedConsumer[]; groups: ConsumerGroup[] } {
  const named: NamedConsumer[] = [];
  const groups = new Map<string, ConsumerGroup>();
  for (const c of consumers) {
    const purpose = consumerPurpose(stream, c);
    if (purpose === undefined) {
      named.push({ name: c.name, pending: c.num_pending, ackPending: c.num_ack_pending, redelivered: c.num_redelivered });
      continue;
    }
    const g = groups.get(purpose) ?? { purpose, count: 0, pending: 0, ackPending: 0 };
    g.count++;
    g.pending += c.num_pending;
    g.ackPending += c.num_ack_pending;
    groups.set(purpose, g);
  }
  return { named: named.sort((a, b) => a.name.localeCompare(b.name)), groups: [...groups.values()].sort((a, b) => a.purpose.localeCompare(b.purpose)) };
}
