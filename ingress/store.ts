import { createHash } from "node:crypto";
import { headers as natsHeaders, type MsgHdrs, type NatsConnection } from "@nats-io/transport-node";
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import { z } from "zod";
import { MQTT_RETAINED_PREFIX, MQTT_RETAINED_STREAM, MQTT_SESSIONS_BUCKET } from "../streams/index.js";
import { H } from "./headers.js";
import { filterToSubjects, subjectToTopic } from "./topics.js";

/** A subscription as the session keeps it. */
export const storedSubscriptionSchema = z.strictObject({
  filter: z.string(),
  qos: z.union([z.literal(0), z.literal(1), z.literal(2)]),
  noLocal: z.boolean().default(false),
  retainAsPublished: z.boolean().default(false),
  retainHandling: z.number().int().min(0).max(2).default(0),
  subscriptionId: z.number().int().optional(),
  /** `$share/<group>/`: delivered to one member of the group. */
  shareGroup: z.string().optional(),
});
export type StoredSubscription = z.infer<typeof storedSubscriptionSchema>;

export const sessionRecordSchema = z.strictObject({
  clientId: z.string(),
  /** Changes whenever a new session starts: part of the message ids of this session's publishes. */
  epoch: z.string(),
  subscriptions: z.array(storedSubscriptionSchema),
  /** Seconds the session outlives its connection. */
  expirySec: z.number().int().min(0),
  /** ms since the epoch; undefined while connected. */
  disconnectedAt: z.number().int().optional(),
  /** The last connection ended with DISCONNECT (nothing left to retransmit). */
  graceful: z.boolean().optional(),
  /** Deliveries the client had not acknowledged when it left: `<stream>:<seq>` → packet id. */
  inflightOut: z.record(z.string(), z.number().int()).optional(),
  protocolVersion: z.number().int(),
});
export type SessionRecord = z.infer<typeof sessionRecordSchema>;

/** A retained message, with what MQTT 5 properties it carried (as headers). */
export interface RetainedMessage {
  topic: string;
  payload: Uint8Array;
  qos: 0 | 1 | 2;
  headers: MsgHdrs | undefined;
}

/** The QoS a retained message was published with (the header every MQTT publish carries). */
export const RETAIN_QOS_HEADER = H.qos;

function sessionKey(clientId: string): string {
  return createHash("sha256").update(clientId, "utf8").digest("hex");
}

/**
 * Sessions (KV `mqtt_sessions`) and retained messages (stream MQTT_RETAINED, one message per subject) live in
 * JetStream, so any ingress instance serving the hub resumes them.
 */
export class IngressStore {
  private constructor(
    private readonly kv: KV,
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
  ) {}

  static async open(nc: NatsConnection): Promise<IngressStore> {
    const kv = await new Kvm(nc).open(MQTT_SESSIONS_BUCKET);
    return new IngressStore(kv, jetstream(nc), await jetstreamManager(nc));
  }

  async loadSession(clientId: string): Promise<SessionRecord | undefined> {
    const e = await this.kv.get(sessionKey(clientId));
    if (e === null || e.operation !== "PUT" || e.length === 0) return undefined;
    const parsed = sessionRecordSchema.safeParse(e.json());
    if (!parsed.success || parsed.data.clientId !== clientId) return undefined;
    const s = parsed.data;
    if (s.disconnectedAt !== undefined && s.disconnectedAt + s.expirySec * 1000 < Date.now()) {
      await this.deleteSession(clientId);
      return undefined;
    }
    return s;
  }

  async saveSession(s: SessionRecord): Promise<void> {
    await this.kv.put(sessionKey(s.clientId), JSON.stringify(s));
  }

  async deleteSession(clientId: string): Promise<void> {
    await this.kv.delete(sessionKey(clientId));
  }

  /** Stores (or, with an empty payload, clears) the retained message of a topic. */
  async retain(subject: string, payload: Uint8Array, qos: 0 | 1 | 2, headers: MsgHdrs | undefined): Promise<void> {
    const retainedSubject = `${MQTT_RETAINED_PREFIX}.${subject}`;
    if (payload.length === 0) {
      await this.jsm.streams.purge(MQTT_RETAINED_STREAM, { filter: retainedSubject });
      return;
    }
    const h = natsHeaders();
    if (headers !== undefined) for (const [k, vs] of headers) for (const v of vs) h.append(k, v);
    h.set(RETAIN_QOS_HEADER, String(qos));
    await this.js.publish(retainedSubject, payload, { headers: h });
  }

  /** The retained messages matching an MQTT filter. */
  async retainedFor(filter: string): Promise<RetainedMessage[]> {
    const subjects = filterToSubjects(filter).map((s) => `${MQTT_RETAINED_PREFIX}.${s}`);
    const out: RetainedMessage[] = [];
    let it;
    try {
      it = await this.jsm.direct.getLastMessagesFor(MQTT_RETAINED_STREAM, { multi_last: subjects });
    } catch {
      return out; // nothing retained matches
    }
    for await (const m of it) {
      const q = Number(m.header.get(RETAIN_QOS_HEADER));
      out.push({
        topic: subjectToTopic(m.subject.slice(MQTT_RETAINED_PREFIX.length + 1)),
        payload: m.data,
        qos: q === 1 || q === 2 ? q : 0,
        headers: m.header,
      });
    }
    return out;
  }
}
