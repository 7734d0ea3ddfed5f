import { createHash } from "node:crypto";
import type { MsgHdrs, NatsConnection } from "@nats-io/transport-node";
import { errorMessage, type JetStreamPublisher, type Logger } from "../fabric/core/index.js";
import type { ValidatedUser } from "../identity/index.js";
import { REJECT_REASON_HEADER } from "../streams/index.js";
import type { Authenticator } from "./auth.js";
import type { IngressConfig } from "./config.js";
import type { MqttConnection, Will } from "./connection.js";
import { headersFromPublish } from "./headers.js";
import type { StreamLocator } from "./locator.js";
import type { TopicMapper } from "./mapping.js";
import { mayPublish } from "./permissions.js";
import type { IngressStore } from "./store.js";
import type { DurableWills } from "./wills.js";

/** What every connection of an ingress instance shares. */
export interface IngressContext {
  config: IngressConfig;
  limits: { maxSessionExpirySec: number };
  nc: NatsConnection;
  publisher: JetStreamPublisher;
  store: IngressStore;
  auth: Authenticator;
  mapper: TopicMapper;
  locator: StreamLocator;
  registry: Registry;
  wills: WillScheduler;
  durableWills: DurableWills;
  log: Logger;
  /** Keeps a message that failed validation in REJECTED, with the reason in a header. */
  rejected(subject: string, payload: Uint8Array, headers: MsgHdrs, reason: string): Promise<void>;
}

export const TAKEOVER_SUBJECT_PREFIX = "$FABRIC.mqtt.takeover";

export function takeoverSubject(clientId: string): string {
  return `${TAKEOVER_SUBJECT_PREFIX}.${createHash("sha256").update(clientId, "utf8").digest("hex").slice(0, 32)}`;
}

/**
 * The connected clients of this instance by client id. A new connection with the same id takes over: here
 * directly, on other instances through a notice on `$FABRIC.mqtt.takeover.<hash>`.
 */
export class Registry {
  private readonly byClientId = new Map<string, MqttConnection>();
  private readonly all = new Set<MqttConnection>();

  constructor(
    private readonly nc: NatsConnection,
    private readonly instanceId: string,
    private readonly wills: WillScheduler,
  ) {}

  add(conn: MqttConnection): void {
    this.all.add(conn);
  }

  get size(): number {
    return this.all.size;
  }

  connections(): Iterable<MqttConnection> {
    return this.all;
  }

  /** `resume`: the new connection continues the session (clean start 0). */
  async claim(conn: MqttConnection, resume: boolean): Promise<void> {
    this.wills.cancel(conn.clientId);
    const old = this.byClientId.get(conn.clientId);
    this.byClientId.set(conn.clientId, conn);
    if (old !== undefined && old !== conn) old.takenOver(resume);
    this.nc.publish(takeoverSubject(conn.clientId), JSON.stringify({ instance: this.instanceId, conn: conn.id, resume }));
    await this.nc.flush();
  }

  /** A takeover notice from another instance. */
  takeoverElsewhere(subject: string, instance: string, resume: boolean): void {
    if (instance === this.instanceId) return;
    for (const [clientId, conn] of this.byClientId) {
      if (takeoverSubject(clientId) === subject) {
        this.byClientId.delete(clientId);
        conn.takenOver(resume);
      }
    }
  }

  /** Removes a closed connection; true when its client id is now held by another connection (taken over). */
  release(conn: MqttConnection): boolean {
    this.all.delete(conn);
    const current = this.byClientId.get(conn.clientId);
    if (current === conn) {
      this.byClientId.delete(conn.clientId);
      return false;
    }
    return true;
  }
}

/** Publishes the wills of clients that went away without DISCONNECT, after their will delay. */
export class WillScheduler {
  private readonly pending = new Map<string, { timer: NodeJS.Timeout; conn: string }>();
  private publishWill: ((user: ValidatedUser, will: Will) => Promise<void>) | undefined;
  private durable: DurableWills | undefined;

  constructor(private readonly log: Logger) {}

  bind(publish: (user: ValidatedUser, will: Will) => Promise<void>, durable: DurableWills): void {
    this.publishWill = publish;
    this.durable = durable;
  }

  /**
   * MQTT 5 §3.1.3.2.2: the will goes out after its delay unless the client is back by then; on a takeover at
   * once, unless the new connection continues the session and there is a delay (`takenOver` is then false).
   */
  schedule(clientId: string, conn: string, user: ValidatedUser, will: Will, takenOver: boolean): void {
    const fire = (): void => {
      this.pending.delete(clientId);
      (this.publishWill?.(user, will) ?? Promise.resolve())
        .then(() => this.durable?.forget(clientId, conn))
        .catch((err: unknown) => this.log.warn({ clientId, err: errorMessage(err) }, "will not published"));
    };
    if (will.delaySec <= 0 || takenOver) {
      fire();
      return;
    }
    const timer = setTimeout(fire, will.delaySec * 1000);
    timer.unref();
    this.pending.set(clientId, { timer, conn });
  }

  /** The client came back within its will delay: no will. */
  cancel(clientId: string): void {
    const p = this.pending.get(clientId);
    if (p === undefined) return;
    clearTimeout(p.timer);
    this.pending.delete(clientId);
    this.durable?.forget(clientId, p.conn).catch(() => undefined);
  }

  /** Stopping: delayed wills stay in KV, where the instances that live on find and send them. */
  stop(): void {
    for (const p of this.pending.values()) clearTimeout(p.timer);
    this.pending.clear();
  }
}

/** A will is published as its client would have: mapped, within the client's permissions, stored when QoS > 0. */
export function willPublisher(ctx: IngressContext): (user: ValidatedUser, will: Will) => Promise<void> {
  return async (user, will) => {
    const now = Date.now();
    const mapped = ctx.mapper.inbound(will.topic, will.payload, now, user);
    if (mapped.readings !== undefined) {
      // a will in a format layout (a Homie device's $state going lost is an attribute, not a reading): its readings
      for (const r of mapped.readings.filter((x) => mayPublish(user.permissions, x.subject))) {
        if (will.qos === 0) ctx.nc.publish(r.subject, r.payload);
        else await ctx.publisher.publish(r.subject, r.payload);
      }
      return;
    }
    if (!mayPublish(user.permissions, mapped.subject)) {
      ctx.log.info({ user: user.name, topic: will.topic }, "will refused by permissions");
      return;
    }
    const headers = headersFromPublish(user.name, { cmd: "publish", topic: will.topic, payload: will.payload, qos: will.qos, retain: will.retain, dup: false, properties: will.properties }, now);
    if (mapped.rejected !== undefined) {
      await ctx.rejected(mapped.subject, will.payload, headers, mapped.rejected);
      return;
    }
    if (will.retain) await ctx.store.retain(mapped.subject, will.payload, will.qos, headers);
    if (will.qos === 0) ctx.nc.publish(mapped.subject, mapped.payload, { headers });
    else await ctx.publisher.publish(mapped.subject, mapped.payload, { headers });
    ctx.log.info({ user: user.name, topic: will.topic }, "will published");
  };
}

/** Keeps a refused message in REJECTED (`rejected.<subject>`), reason in the Fabric-Reject-Reason header. */
export function rejectedPublisher(publisher: JetStreamPublisher, log: Logger): IngressContext["rejected"] {
  return async (subject, payload, headers, reason) => {
    headers.set(REJECT_REASON_HEADER, reason);
    await publisher.publish(`rejected.${subject}`, payload, { headers });
    log.info({ subject, reason }, "message kept in REJECTED");
  };
}
