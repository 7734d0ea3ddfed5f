import { createHash } from "node:crypto";
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { z } from "zod";
import { errorMessage, type Logger } from "../fabric/core/index.js";
import type { ValidatedUser } from "../identity/index.js";
import { kvKeys, MQTT_INSTANCE_TTL_MS, MQTT_INSTANCES_BUCKET, MQTT_WILLS_BUCKET } from "../streams/index.js";
import type { Will } from "./connection.js";

const HEARTBEAT_MS = MQTT_INSTANCE_TTL_MS / 3;
const JANITOR_MS = MQTT_INSTANCE_TTL_MS / 2;

const storedWillSchema = z.strictObject({
  clientId: z.string(),
  instance: z.string(),
  /** The connection it belongs to (a newer connection of the client replaces it). */
  conn: z.string(),
  jwt: z.string(),
  topic: z.string(),
  payload: z.string(),
  qos: z.union([z.literal(0), z.literal(1), z.literal(2)]),
  retain: z.boolean(),
  properties: z.string().optional(),
  delaySec: z.number().int().min(0),
  /** Set by the instance that took it over from a dead one: when its delay started. */
  orphanedAt: z.number().int().optional(),
});
type StoredWill = z.infer<typeof storedWillSchema>;

function key(clientId: string): string {
  return createHash("sha256").update(clientId, "utf8").digest("hex");
}

function encodeProperties(p: Will["properties"]): string | undefined {
  if (p === undefined) return undefined;
  return JSON.stringify(p, (_, v: unknown) => (Buffer.isBuffer(v) ? { $b64: v.toString("base64") } : (v as { type?: string; data?: number[] })?.type === "Buffer" ? { $b64: Buffer.from((v as { data: number[] }).data).toString("base64") } : v));
}

function decodeProperties(s: string | undefined): Will["properties"] {
  if (s === undefined) return undefined;
  return JSON.parse(s, (_, v: unknown) => (typeof v === "object" && v !== null && "$b64" in v ? Buffer.from(String((v as { $b64: string }).$b64), "base64") : v)) as Will["properties"];
}

/**
 * The wills of this instance's clients, kept in KV while they are connected, and the instance's heartbeat. When
 * an instance dies, the others notice its heartbeat gone, take its wills over (compare-and-set, so one of them
 * does) and publish each after its will delay, as the dead instance would have.
 */
export class DurableWills {
  private readonly timers: NodeJS.Timeout[] = [];

  private constructor(
    private readonly jsm: JetStreamManager,
    private readonly wills: KV,
    private readonly instances: KV,
    private readonly instanceId: string,
    private readonly log: Logger,
  ) {}

  static async open(nc: NatsConnection, instanceId: string, log: Logger): Promise<DurableWills> {
    const kvm = new Kvm(nc);
    const w = new DurableWills(await jetstreamManager(nc), await kvm.open(MQTT_WILLS_BUCKET), await kvm.open(MQTT_INSTANCES_BUCKET), instanceId, log.child({ wills: "durable" }));
    await w.beat();
    return w;
  }

  private stats: () => Record<string, number> = () => ({});
  private readonly startedAt = Date.now();

  /** The heartbeat carries what `fabric status` shows of the instance. */
  private async beat(): Promise<void> {
    await this.instances.put(this.instanceId, JSON.stringify({ pid: process.pid, startedAt: this.startedAt, at: Date.now(), ...this.stats() }));
  }

  /** Starts the heartbeat and the janitor that takes over the wills of dead instances. */
  start(publish: (user: ValidatedUser, will: Will) => Promise<void>, validate: (jwt: string) => ValidatedUser, stats: () => Record<string, number>): void {
    this.stats = stats;
    const hb = setInterval(() => void this.beat().catch((err: unknown) => this.log.warn({ err: errorMessage(err) }, "heartbeat failed")), HEARTBEAT_MS);
    const janitor = setInterval(() => void this.sweep(publish, validate).catch((err: unknown) => this.log.warn({ err: errorMessage(err) }, "will sweep failed")), JANITOR_MS);
    hb.unref();
    janitor.unref();
    this.timers.push(hb, janitor);
  }

  async record(clientId: string, conn: string, jwt: string, will: Will): Promise<void> {
    const stored: StoredWill = {
      clientId,
      instance: this.instanceId,
      conn,
      jwt,
      topic: will.topic,
      payload: will.payload.toString("base64"),
      qos: will.qos,
      retain: will.retain,
      ...(will.properties === undefined ? {} : { properties: encodeProperties(will.properties) }),
      delaySec: will.delaySec,
    };
    await this.wills.put(key(clientId), JSON.stringify(stored));
  }

  /** The will of that connection was published or is not to be: no one else may send it. */
  async forget(clientId: string, conn: string): Promise<void> {
    const e = await this.wills.get(key(clientId));
    if (e === null || e.operation !== "PUT") return;
    const parsed = storedWillSchema.safeParse(e.json());
    if (!parsed.success || parsed.data.conn === conn) await this.wills.delete(key(clientId), { previousSeq: e.revision }).catch(() => undefined);
  }

  /**
   * One round of the janitor (`start` runs one every 3 s). The keys come from the streams' subject counts
   * (`kvKeys`, one request) and instances are looked up by key: `kv.keys()` would create an ordered consumer
   * each round, living 5 minutes, about a hundred per bucket on an idle hub.
   */
  async sweep(publish: (user: ValidatedUser, will: Will) => Promise<void>, validate: (jwt: string) => ValidatedUser): Promise<void> {
    const seen = new Map<string, boolean>();
    const alive = async (instance: string): Promise<boolean> => {
      let a = seen.get(instance);
      if (a === undefined) {
        const hb = await this.instances.get(instance); // a stopped instance leaves a delete marker, an expired one nothing
        a = hb !== null && hb.operation === "PUT";
        seen.set(instance, a);
      }
      return a;
    };
    for (const k of await kvKeys(this.jsm, MQTT_WILLS_BUCKET, ">")) {
      const e = await this.wills.get(k);
      if (e === null || e.operation !== "PUT") continue;
      const parsed = storedWillSchema.safeParse(e.json());
      if (!parsed.success) continue;
      const w = parsed.data;
      if (w.instance === this.instanceId) {
        if (w.orphanedAt === undefined) continue; // a client of ours
      } else if (await alive(w.instance)) continue;
      const orphanedAt = w.orphanedAt ?? Date.now();
      if (w.instance !== this.instanceId) {
        try {
          await this.wills.update(k, JSON.stringify({ ...w, instance: this.instanceId, orphanedAt }), e.revision);
        } catch {
          continue; // another instance took it
        }
      }
      if (orphanedAt + w.delaySec * 1000 > Date.now()) continue; // its delay runs on
      await this.wills.delete(k);
      try {
        const user = validate(w.jwt);
        await publish(user, { topic: w.topic, payload: Buffer.from(w.payload, "base64"), qos: w.qos, retain: w.retain, properties: decodeProperties(w.properties), delaySec: w.delaySec });
        this.log.info({ clientId: w.clientId }, "will of a client of a dead instance published");
      } catch (err) {
        this.log.warn({ clientId: w.clientId, err: errorMessage(err) }, "will of a client of a dead instance not published");
      }
    }
  }

  async stop(): Promise<void> {
    for (const t of this.timers.splice(0)) clearInterval(t);
    await this.instances.delete(this.instanceId).catch(() => undefined);
  }
}
