import { hash, randomBytes } from "node:crypto";
import type { Duplex } from "node:stream";
import { generate, parser as mqttParser, type IConnectPacket, type IPublishPacket, type ISubscribePacket, type IUnsubscribePacket, type Packet, type Parser } from "mqtt-packet";
import type { Msg, MsgHdrs, Subscription } from "@nats-io/transport-node";
import type { JsMsg } from "@nats-io/jetstream";
import { continueTrace, decodePayload, endSpan, endWhenSettled, errorMessage, isFabricError, PublishError, SPAN, SpanKind, tracingEnabled, type Logger } from "../fabric/core/index.js";
import type { ValidatedUser } from "../identity/index.js";
import { FABRIC_AUTH_METHOD } from "./auth.js";
import type { IngressContext } from "./context.js";
import { connackV3For, MqttError, ReasonCode, type ReasonCodeValue } from "./errors.js";
import { DurableSessionConsumers, streamFor } from "./durable.js";
import { Framer } from "./framer.js";
import { headersFromPublish, propertiesFromHeaders } from "./headers.js";
import { ingressMetrics } from "./metrics.js";
import { mayPublish, maySubscribe } from "./permissions.js";
import type { SessionRecord, StoredSubscription } from "./store.js";
import { filterToSubjects, parseSharedFilter, subjectMatches, subjectToTopic, topicFilterProblem, topicMatches, topicNameProblem, topicToSubject } from "./topics.js";
import type { Reading } from "./formats/format-mapping.js";
import type { MappedMessage } from "./mapping.js";

const PROTOCOL_NAMES: Readonly<Record<number, string>> = { 3: "3.1", 4: "3.1.1", 5: "5.0" };

/** The MQTT 5 `content-encoding` user property of a publish, taken off it (the payload is stored inflated). */
function takeContentEncoding(packet: IPublishPacket): string | undefined {
  const props = packet.properties?.userProperties;
  if (props === undefined) return undefined;
  const key = Object.keys(props).find((k) => k.toLowerCase() === "content-encoding");
  if (key === undefined) return undefined;
  const v = props[key];
  delete props[key];
  return Array.isArray(v) ? v[0] : v;
}
import { DEVICE_ROLES, HOMIE_ATTRIBUTES, INGRESS_PRESENCE_SUBJECT, type HomieAttribute, type IngressPresence } from "../devices/index.js";

type QoS = 0 | 1 | 2;
type Version = 3 | 4 | 5;

const MAX_WRITE_BUFFER = 8 * 1_048_576; // 8 MiB: beyond this, QoS 0 deliveries to a slow client are dropped
const DEFAULT_CLIENT_RECEIVE_MAXIMUM = 65_535;

interface Will {
  topic: string;
  payload: Buffer;
  qos: QoS;
  retain: boolean;
  properties: IPublishPacket["properties"];
  delaySec: number;
}

interface ActiveSubscription {
  stored: StoredSubscription;
  nats: Subscription[];
  /** Served by the session's durable consumer on this stream instead of core subscriptions. */
  durableStream?: string | undefined;
  /** The NATS subjects of the filter the credential allows. */
  subjects: string[];
}

interface OutboundInflight {
  packet: IPublishPacket;
  /** QoS 2 after PUBREC: waiting for PUBCOMP. */
  released: boolean;
  /** From a durable consumer: acknowledged to JetStream when the client acknowledges it. */
  js?: JsMsg | undefined;
}

/** Why a connection ended, for the will and the log. */
type EndReason = { kind: "disconnect"; withWill: boolean } | { kind: "error"; reason: ReasonCodeValue; message: string } | { kind: "closed" };

/**
 * One MQTT client connection: the protocol state machine for MQTT 3.1, 3.1.1 and 5.0 in front of NATS and
 * JetStream. Acknowledgements of QoS 1/2 publishes are sent only once JetStream has stored the message.
 */
export class MqttConnection {
  readonly id = randomBytes(6).toString("hex");
  clientId = "";
  user: ValidatedUser | undefined;
  private version: Version = 4;
  private readonly log: Logger;
  private readonly framer: Framer;
  private parser: Parser;
  private connected = false;
  private closed = false;
  private session: SessionRecord | undefined;
  private will: Will | undefined;
  private keepaliveMs = 0;
  private lastPacketAt = Date.now();
  private keepaliveTimer: NodeJS.Timeout | undefined;
  private connectTimer: NodeJS.Timeout | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;
  private enhancedAuth: { user: ValidatedUser; nonce: string; connect: IConnectPacket } | undefined;
  private inboundInflight = 0;
  /** The message id last stored for each packet id on this connection (see store). */
  private pidFingerprints: Uint32Array | undefined;
  private pidRepeats: Uint16Array | undefined;
  /** QoS 2 packet ids stored and PUBREC'd, waiting for PUBREL. */
  private readonly awaitingRelease = new Set<number>();
  private readonly subscriptions = new Map<string, ActiveSubscription>();
  private readonly outbound = new Map<number, OutboundInflight>();
  private readonly outboundQueue: { packet: IPublishPacket; js?: JsMsg | undefined }[] = [];
  private durable: DurableSessionConsumers | undefined;
  private nextPacketId = 1;
  private clientReceiveMaximum = DEFAULT_CLIENT_RECEIVE_MAXIMUM;
  private clientMaxPacketSize = Number.MAX_SAFE_INTEGER;
  private readonly aliasesIn = new Map<number, string>();
  private readonly aliasesOut = new Map<string, number>();
  private clientTopicAliasMaximum = 0;
  /** For overlapping subscriptions: further copies of a message already delivered, to drop. */
  private readonly copiesToDrop = new Map<string, number>();
  /** Reply subjects of requests delivered to this client, which it may publish a response to. */
  private readonly responseGrants = new Map<string, number>();
  private endReason: EndReason = { kind: "closed" };
  droppedQoS0 = 0;

  constructor(
    private readonly ctx: IngressContext,
    private readonly socket: Duplex,
    readonly remote: string,
  ) {
    this.log = ctx.log.child({ conn: this.id, remote });
    this.framer = new Framer(ctx.config.maxPacketSize);
    this.parser = this.newParser();
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("error", (err) => this.log.debug({ err: errorMessage(err) }, "socket error"));
    socket.on("close", () => void this.onSocketClosed());
    this.connectTimer = setTimeout(() => this.abort("no CONNECT in time"), ctx.config.connectTimeoutMs);
  }

  private newParser(): Parser {
    const p = mqttParser({ protocolVersion: this.version });
    p.on("packet", (packet: Packet) => {
      this.lastPacketAt = Date.now();
      if (illFormedUtf8(packet, this.lastFrame)) {
        // MQTT 3.1.1 §1.5.3, 5.0 §1.5.4: ill-formed UTF-8 in a string is a malformed packet
        this.fail(new MqttError(ReasonCode.MalformedPacket, `ill-formed UTF-8 in a ${packet.cmd.toUpperCase()} string`));
        return;
      }
      if (this.busy) this.backlog.push(packet);
      else this.run(packet);
    });
    p.on("error", (err: Error) => {
      if (!this.connected && /protocol version/i.test(err.message)) {
        // MQTT 3.1.1 §3.2.2.3: an unsupported level gets return code 1, then the connection closes.
        this.write({ cmd: "connack", returnCode: 1, sessionPresent: false });
        this.destroy();
        return;
      }
      this.fail(new MqttError(ReasonCode.MalformedPacket, `malformed packet: ${err.message}`));
    });
    return p;
  }

  private onData(chunk: Buffer): void {
    if (this.closed) return;
    for (const frame of this.framer.push(chunk)) {
      if (frame.kind === "too-large") {
        this.fail(new MqttError(ReasonCode.PacketTooLarge, `packet of ${frame.size} bytes is over the limit of ${this.ctx.config.maxPacketSize}`));
        return;
      }
      if (frame.kind === "malformed") {
        this.fail(new MqttError(ReasonCode.MalformedPacket, frame.why));
        return;
      }
      const fast = this.connected && !this.busy ? decodeSimplePublish(frame.bytes, this.version) : undefined;
      if (fast !== undefined) {
        this.lastPacketAt = Date.now();
        this.run(fast);
      } else {
        this.lastFrame = frame.bytes;
        this.parser.parse(frame.bytes);
      }
    }
  }

  // --- writing ---

  private write(packet: Packet): boolean {
    if (this.closed || this.socket.destroyed) return false;
    let bytes: Buffer;
    try {
      bytes = generate(packet, { protocolVersion: this.version });
    } catch (err) {
      this.log.error({ err: errorMessage(err), cmd: packet.cmd }, "could not encode a packet");
      return false;
    }
    if (bytes.length > this.clientMaxPacketSize) {
      this.log.debug({ cmd: packet.cmd, size: bytes.length }, "packet over the client's maximum size not sent");
      return false;
    }
    this.flushPendingAcks();
    return this.writeBytes(bytes);
  }

  /** Writes of one tick go out in one syscall (the acks of a pipelined burst, the deliveries of a batch). */
  private writeBytes(bytes: Buffer): boolean {
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(() => {
        this.corked = false;
        this.socket.uncork();
      });
    }
    return this.socket.write(bytes);
  }

  private corked = false;

  /**
   * A success PUBACK/PUBREC/PUBCOMP is 4 bytes in every version: written without the encoder, the acks of a
   * tick gathered into one buffer.
   */
  private writeAck(type: 0x40 | 0x50 | 0x70, pid: number): void {
    if (this.closed || this.socket.destroyed) return;
    if (this.acks.length === 0) process.nextTick(() => this.flushPendingAcks());
    this.acks.push(type, 2, pid >> 8, pid & 0xff);
  }

  /** Gathered acks go out before any other packet, so the order of everything written stays as decided. */
  private flushPendingAcks(): void {
    if (this.acks.length === 0) return;
    const bytes = Buffer.from(this.acks);
    this.acks.length = 0;
    if (!this.closed && !this.socket.destroyed) this.writeBytes(bytes);
  }

  private readonly acks: number[] = [];

  /** Ends the connection: MQTT 5 gets a DISCONNECT with the reason first. */
  kick(reason: ReasonCodeValue, message: string): void {
    if (this.closed) return;
    this.endReason = { kind: "error", reason, message };
    if (this.version === 5 && this.connected) {
      this.write({ cmd: "disconnect", reasonCode: reason, properties: { reasonString: message.slice(0, 200) } });
    }
    this.log.info({ clientId: this.clientId, reason, message }, "disconnecting client");
    this.destroy();
  }

  private fail(err: unknown): void {
    if (this.closed) return;
    if (err instanceof MqttError) {
      if (!this.connected) {
        ingressMetrics.connectRefused(err);
        this.refuseConnect(err.reason, err.message);
        return;
      }
      this.kick(err.reason, err.message);
      return;
    }
    this.log.error({ err: errorMessage(err) }, "connection failed");
    this.kick(ReasonCode.UnspecifiedError, errorMessage(err));
  }

  private abort(why: string): void {
    this.log.debug({ why }, "closing connection");
    this.endReason = { kind: "error", reason: ReasonCode.ProtocolError, message: why };
    this.destroy();
  }

  private destroy(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.end();
    setTimeout(() => this.socket.destroy(), 1_000).unref();
    void this.cleanup();
  }

  // --- dispatch ---

  /**
   * Packets are handled one after the other, in order: a handler that has to wait (CONNECT checking the
   * credential, SUBSCRIBE saving the session) holds back the packets behind it. A PUBLISH never waits here:
   * its store is started at once, in order, and its acknowledgement follows when stored.
   */
  private busy = false;
  private readonly backlog: Packet[] = [];

  private run(packet: Packet): void {
    let pending: void | Promise<void>;
    try {
      pending = this.handle(packet);
    } catch (err) {
      this.fail(err);
      return;
    }
    if (pending === undefined) return;
    this.busy = true;
    pending
      .catch((err: unknown) => this.fail(err))
      .finally(() => {
        this.busy = false;
        while (!this.busy && !this.closed) {
          const next = this.backlog.shift();
          if (next === undefined) break;
          this.run(next);
        }
      });
  }

  private handle(packet: Packet): void | Promise<void> {
    if (this.closed) return;
    if (!this.connected) {
      if (packet.cmd === "connect") return this.onConnect(packet);
      if (packet.cmd === "auth" && this.enhancedAuth !== undefined) return this.onAuthContinue(packet.properties?.authenticationData);
      throw new MqttError(ReasonCode.ProtocolError, `expected CONNECT, got ${packet.cmd.toUpperCase()}`);
    }
    switch (packet.cmd) {
      case "publish":
        return this.onPublish(packet);
      case "puback":
      case "pubcomp":
        return this.onOutboundDone(packet.messageId ?? 0);
      case "pubrec":
        return this.onPubrec(packet.messageId ?? 0, packet.reasonCode);
      case "pubrel":
        this.awaitingRelease.delete(packet.messageId ?? 0);
        this.writeAck(0x70, packet.messageId ?? 0);
        return;
      case "subscribe":
        return this.onSubscribe(packet);
      case "unsubscribe":
        return this.onUnsubscribe(packet);
      case "pingreq":
        this.write({ cmd: "pingresp" });
        return;
      case "disconnect": {
        const withWill = this.version === 5 && packet.reasonCode === ReasonCode.DisconnectWithWill;
        const expiry = packet.properties?.sessionExpiryInterval;
        if (expiry !== undefined && this.session !== undefined) {
          if (this.session.expirySec === 0 && expiry > 0) throw new MqttError(ReasonCode.ProtocolError, "session expiry cannot be set on DISCONNECT when it was 0 at CONNECT");
          this.session.expirySec = Math.min(expiry, this.ctx.limits.maxSessionExpirySec);
        }
        this.endReason = { kind: "disconnect", withWill };
        this.destroy();
        return;
      }
      case "connect":
        throw new MqttError(ReasonCode.ProtocolError, "a second CONNECT");
      case "auth":
        throw new MqttError(ReasonCode.ProtocolError, "re-authentication is not supported");
      default:
        throw new MqttError(ReasonCode.ProtocolError, `unexpected ${packet.cmd.toUpperCase()} from a client`);
    }
  }

  // --- CONNECT ---

  private refuseConnect(reason: ReasonCodeValue, message: string): void {
    this.log.info({ clientId: this.clientId, reason, message }, "connection refused");
    this.endReason = { kind: "error", reason, message };
    if (this.version === 5) this.write({ cmd: "connack", reasonCode: reason, sessionPresent: false, properties: { reasonString: message.slice(0, 200) } });
    else this.write({ cmd: "connack", returnCode: connackV3For(reason), sessionPresent: false });
    this.destroy();
  }

  private async onConnect(packet: IConnectPacket): Promise<void> {
    this.version = (packet.protocolVersion ?? 4);
    clearTimeout(this.connectTimer);
    let clientId = packet.clientId;
    const clean = packet.clean !== false;
    let assigned: string | undefined;
    if (clientId === "") {
      if (this.version !== 5 && !clean) throw new MqttError(ReasonCode.ClientIdentifierNotValid, "an empty client id needs a clean session");
      clientId = `fabric-${randomBytes(9).toString("base64url")}`;
      if (this.version === 5) assigned = clientId;
    }
    this.clientId = clientId;
    const method = packet.properties?.authenticationMethod;
    if (this.version === 5 && method !== undefined) {
      if (method !== FABRIC_AUTH_METHOD) throw new MqttError(ReasonCode.BadAuthenticationMethod, `authentication method ${method} is not supported (use ${FABRIC_AUTH_METHOD})`);
      const { user, nonce } = await this.ctx.auth.challenge(packet.properties?.authenticationData);
      this.enhancedAuth = { user, nonce, connect: { ...packet, clientId } };
      this.assignedClientId = assigned;
      this.write({ cmd: "auth", reasonCode: ReasonCode.ContinueAuthentication, properties: { authenticationMethod: FABRIC_AUTH_METHOD, authenticationData: Buffer.from(nonce, "utf8") } });
      return;
    }
    const user = await this.ctx.auth.password(packet.username, packet.password, clientId);
    await this.accept(packet, user, clean, assigned);
  }

  private assignedClientId: string | undefined;

  private async onAuthContinue(signature: Buffer | undefined): Promise<void> {
    const pending = this.enhancedAuth;
    if (pending === undefined) throw new MqttError(ReasonCode.ProtocolError, "AUTH without an authentication in progress");
    this.ctx.auth.verifyChallenge(pending.user, pending.nonce, signature);
    this.enhancedAuth = undefined;
    await this.accept(pending.connect, pending.user, pending.connect.clean !== false, this.assignedClientId, true);
  }

  private async accept(packet: IConnectPacket, user: ValidatedUser, clean: boolean, assigned: string | undefined, enhanced = false): Promise<void> {
    this.user = user;
    const props = packet.properties;
    this.clientReceiveMaximum = props?.receiveMaximum ?? DEFAULT_CLIENT_RECEIVE_MAXIMUM;
    this.clientMaxPacketSize = props?.maximumPacketSize ?? Number.MAX_SAFE_INTEGER;
    this.clientTopicAliasMaximum = props?.topicAliasMaximum ?? 0;
    // the client id may now take over another connection of the same id, here or on another instance
    await this.ctx.registry.claim(this, !clean);
    if (this.closed) return;
    const previous = await this.ctx.store.loadSession(this.clientId);
    this.hadStoredSession = previous !== undefined && !clean;
    let session = clean ? undefined : previous;
    if (clean && previous !== undefined) {
      await this.ctx.store.deleteSession(this.clientId);
      if (previous.subscriptions.some((x) => x.qos > 0)) await DurableSessionConsumers.deleteAll(this.ctx.nc, this.clientId);
    }
    const sessionPresent = session !== undefined;
    const expirySec = this.version === 5 ? Math.min(props?.sessionExpiryInterval ?? 0, this.ctx.limits.maxSessionExpirySec) : clean ? 0 : this.ctx.config.sessionExpirySec;
    session ??= { clientId: this.clientId, epoch: randomBytes(6).toString("base64url"), subscriptions: [], expirySec, protocolVersion: this.version };
    // After a DISCONNECT the client has nothing to retransmit: a new epoch, so its new messages never match
    // the last ones of that connection. After an abrupt end (network, ingress crash, takeover) the epoch stays,
    // so its retransmissions are recognised and stored once.
    const epoch = session.graceful === true ? randomBytes(6).toString("base64url") : session.epoch;
    session = { ...session, epoch, expirySec, protocolVersion: this.version };
    delete session.disconnectedAt;
    delete session.graceful;
    this.session = session;
    if (expirySec > 0) {
      await this.ctx.store.saveSession(session);
      this.hadStoredSession = true;
    }
    if (packet.will !== undefined) {
      const w = packet.will;
      const problem = topicNameProblem(w.topic);
      if (problem !== undefined) throw new MqttError(ReasonCode.TopicNameInvalid, `will ${problem}`);
      this.will = {
        topic: w.topic,
        payload: Buffer.isBuffer(w.payload) ? w.payload : Buffer.from(w.payload),
        qos: (w.qos ?? 0),
        retain: w.retain === true,
        properties: w.properties === undefined ? undefined : { ...w.properties, payloadFormatIndicator: w.properties.payloadFormatIndicator },
        delaySec: w.properties?.willDelayInterval ?? 0,
      };
      // kept in JetStream too: if this instance dies, another one sends it
      await this.ctx.durableWills.record(this.clientId, this.id, user.jwt, this.will);
    }
    let keepalive = packet.keepalive ?? 0;
    let serverKeepAlive: number | undefined;
    const max = this.ctx.config.maxKeepAliveSec;
    if (this.version === 5 && max > 0 && (keepalive === 0 || keepalive > max)) {
      keepalive = max;
      serverKeepAlive = max;
    }
    this.keepaliveMs = keepalive * 1000;
    this.connected = true;
    // the session's subscriptions are in place on the server before the CONNACK says the session is there;
    // what they receive before the CONNACK is written waits for it
    for (const s of session.subscriptions) this.activate(s);
    await this.ctx.nc.flush();
    if (this.closed) return;
    if (this.version === 5) {
      this.write({
        cmd: "connack",
        reasonCode: ReasonCode.Success,
        sessionPresent,
        properties: {
          receiveMaximum: this.ctx.config.receiveMaximum,
          maximumPacketSize: this.ctx.config.maxPacketSize,
          topicAliasMaximum: this.ctx.config.topicAliasMaximum,
          retainAvailable: true,
          wildcardSubscriptionAvailable: true,
          subscriptionIdentifiersAvailable: true,
          sharedSubscriptionAvailable: true,
          ...(expirySec !== (props?.sessionExpiryInterval ?? 0) ? { sessionExpiryInterval: expirySec } : {}),
          ...(assigned === undefined ? {} : { assignedClientIdentifier: assigned }),
          ...(serverKeepAlive === undefined ? {} : { serverKeepAlive }),
          ...(enhanced ? { authenticationMethod: FABRIC_AUTH_METHOD } : {}),
        },
      });
    } else {
      this.write({ cmd: "connack", returnCode: 0, sessionPresent });
    }
    this.log.info({ clientId: this.clientId, user: user.name, role: user.role, version: this.version, sessionPresent }, "client connected");
    this.presence("connect");
    ingressMetrics.connected(this.version);
    this.counted = true;
    if (this.keepaliveMs > 0) {
      this.keepaliveTimer = setInterval(() => {
        if (Date.now() - this.lastPacketAt > this.keepaliveMs * 1.5) this.kick(ReasonCode.KeepAliveTimeout, "keepalive timeout");
      }, Math.max(250, this.keepaliveMs / 2));
      this.keepaliveTimer.unref();
    }
    if (user.expiresAt !== undefined) {
      const ms = user.expiresAt * 1000 - Date.now();
      this.expiryTimer = setTimeout(() => this.kick(ReasonCode.NotAuthorized, "credential expired"), Math.max(0, Math.min(ms, 2_147_000_000)));
      this.expiryTimer.unref();
    }
    this.connackSent = true;
    for (const [msg, via] of this.early.splice(0)) this.deliver(msg, via);
    await this.syncDurable();
  }

  private connackSent = false;
  /** Counted in the open connections (ingressMetrics) until cleaned up. */
  private counted = false;
  /** The frame being parsed, for checks of the raw bytes. */
  private lastFrame: Buffer = Buffer.alloc(0);
  private readonly early: [Msg, StoredSubscription][] = [];

  /** Brings the session's durable consumers in line with its durable subscriptions, and pulls from them. */
  private async syncDurable(): Promise<void> {
    const session = this.session;
    if (session === undefined || session.expirySec === 0) return;
    const byStream = new Map<string, string[]>();
    for (const a of this.subscriptions.values()) {
      if (a.durableStream === undefined) continue;
      byStream.set(a.durableStream, [...(byStream.get(a.durableStream) ?? []), ...a.subjects]);
    }
    if (byStream.size === 0 && this.durable === undefined) return;
    this.durable ??= new DurableSessionConsumers(this.ctx.nc, this.clientId, this.log);
    try {
      await this.durable.stop();
      await this.durable.sync(byStream, session.expirySec, this.clientReceiveMaximum);
      if (!this.closed) await this.durable.start(byStream.keys(), (m) => this.deliverDurable(m));
    } catch (err) {
      // the session stays usable: its QoS 1/2 subscriptions then only get what arrives while it is connected
      this.log.error({ clientId: this.clientId, err: errorMessage(err) }, "durable session consumers not in place");
    }
  }

  /** The packet ids of deliveries from durable consumers not yet acknowledged, to send them again with the same id. */
  private inflightOutRecord(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [pid, o] of this.outbound) if (o.js !== undefined) out[`${o.js.info.stream}:${o.js.seq}`] = pid;
    return out;
  }

  private deliverDurable(js: JsMsg): void {
    if (this.closed) {
      js.nak();
      return;
    }
    const topic = subjectToTopic(js.subject);
    const matching = [...this.subscriptions.values()].filter((a) => a.durableStream !== undefined && topicMatches(a.stored.filter, topic)).map((a) => a.stored);
    const { properties, expired, origin, retained, publishedQos } = propertiesFromHeaders(js.headers, undefined, Date.now());
    const eligible = matching.filter((s) => !(s.noLocal && origin === this.clientId));
    if (expired || eligible.length === 0) {
      js.ack();
      return;
    }
    const qos = Math.max(1, Math.min(Math.max(...eligible.map((s) => s.qos)), publishedQos)) as QoS;
    const ids = eligible.flatMap((s) => (s.subscriptionId === undefined ? [] : [s.subscriptionId]));
    if (ids.length > 0) properties.subscriptionIdentifier = ids.length === 1 ? (ids[0] ?? 0) : ids;
    this.sendPublish(topic, Buffer.from(js.data), qos, retained && eligible.some((s) => s.retainAsPublished), properties, js);
  }

  private takenOverByResume = false;
  /** A session record of this client exists in KV (to delete when the session ends). */
  private hadStoredSession = false;

  /** Another connection took over the client id (`resume`: it continues the session). */
  takenOver(resume: boolean): void {
    this.takenOverByResume = resume;
    this.kick(ReasonCode.SessionTakenOver, "another connection took over the session");
  }

  /** The account changed: a revoked or no longer valid credential is cut off. */
  recheck(): void {
    if (this.user === undefined || this.closed) return;
    try {
      this.ctx.auth.recheck(this.user);
    } catch (err) {
      this.kick(ReasonCode.NotAuthorized, errorMessage(err));
    }
  }

  // --- PUBLISH from the client ---

  private resolveTopic(packet: IPublishPacket): string {
    const alias = packet.properties?.topicAlias;
    if (alias === undefined) return packet.topic;
    if (alias === 0 || alias > this.ctx.config.topicAliasMaximum) throw new MqttError(ReasonCode.TopicAliasInvalid, `topic alias ${alias} is out of range`);
    if (packet.topic !== "") {
      this.aliasesIn.set(alias, packet.topic);
      return packet.topic;
    }
    const topic = this.aliasesIn.get(alias);
    if (topic === undefined) throw new MqttError(ReasonCode.ProtocolError, `topic alias ${alias} was never set`);
    return topic;
  }

  private onPublish(packet: IPublishPacket): void {
    const user = this.user;
    if (user === undefined) return;
    const qos = packet.qos;
    const pid = packet.messageId ?? 0;
    const topic = this.resolveTopic(packet);
    if (!this.publishAllowed.has(topic)) {
      // a topic is checked the first time (the permission cache below remembers it from then on)
      const problem = topicNameProblem(topic);
      if (problem !== undefined) throw new MqttError(ReasonCode.TopicNameInvalid, problem);
    }
    if (qos === 2 && this.awaitingRelease.has(pid)) {
      // a retransmission of a QoS 2 publish already stored: acknowledge again, store nothing
      this.write({ cmd: "pubrec", messageId: pid });
      return;
    }
    if (qos > 0) {
      this.inboundInflight++;
      if (this.inboundInflight > this.ctx.config.receiveMaximum) {
        if (this.version === 5) throw new MqttError(ReasonCode.ReceiveMaximumExceeded, `more than ${this.ctx.config.receiveMaximum} unacknowledged publishes`);
        this.socket.pause(); // MQTT 3 has no limit to announce: slow the client down instead
      }
    }
    let payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
    // an opt-in codec: a gzip payload (MQTT 5 user property content-encoding: gzip) is stored inflated
    const encoding = takeContentEncoding(packet);
    if (encoding !== undefined) {
      try {
        payload = Buffer.from(decodePayload(payload, encoding));
      } catch (err) {
        const reason = errorMessage(err);
        this.chainAck(qos, pid, this.ctx.rejected(topicToSubject(topic), payload, headersFromPublish(this.clientId, packet, Date.now()), reason).then(() => ({ reason: ReasonCode.PayloadFormatInvalid, message: reason })));
        return;
      }
    }
    if (packet.properties?.payloadFormatIndicator === true && !isUtf8(payload)) {
      ingressMetrics.published(qos, "refused");
      this.settleInbound(qos, pid, ReasonCode.PayloadFormatInvalid, "payload is not UTF-8 though its format indicator says so");
      return;
    }
    const now = Date.now();
    const mapped = this.ctx.mapper.inbound(topic, payload, now, user);
    if (mapped.homieAttribute !== undefined) this.homieAttribute(user, mapped.homieAttribute, now);
    if (mapped.readings !== undefined) {
      this.publishReadings(qos, pid, user, topic, packet, payload, mapped.readings, now);
      return;
    }
    if (!this.mayPublishCached(user, topic, mapped.subject) && !this.useResponseGrant(mapped.subject)) {
      this.log.info({ clientId: this.clientId, subject: mapped.subject }, "publish refused by permissions");
      ingressMetrics.published(qos, "refused");
      this.settleInbound(qos, pid, ReasonCode.NotAuthorized, `not allowed to publish to ${topic}`);
      return;
    }
    const headers = headersFromPublish(this.clientId, packet, now);
    // tracing on: the message goes on with this span's traceparent, a child of the device's (ends once stored)
    const span = tracingEnabled() ? continueTrace(headers, SPAN.mqttPublish, mapped.subject, SpanKind.SERVER, { "mqtt.client_id": this.clientId, "mqtt.qos": qos }) : undefined;
    if (mapped.rejected !== undefined) {
      const stored = this.ctx.rejected(mapped.subject, payload, headers, mapped.rejected);
      this.chainAck(qos, pid, endWhenSettled(span, stored.then(() => ({ reason: ReasonCode.PayloadFormatInvalid, message: mapped.rejected }))));
      return;
    }
    let retained: Promise<void> | undefined;
    if (packet.retain) {
      retained = this.ctx.store.retain(mapped.subject, payload, qos, headers);
      if (payload.length === 0) {
        // clearing a retained message publishes nothing else
        this.chainAck(qos, pid, endWhenSettled(span, retained.then(() => ({ reason: ReasonCode.Success }))));
        return;
      }
    }
    if (qos === 0) {
      this.ctx.nc.publish(mapped.subject, mapped.payload, { headers });
      ingressMetrics.published(0, "forwarded");
      endSpan(span?.span);
      retained?.catch((err: unknown) => this.log.warn({ err: errorMessage(err) }, "retained message not stored"));
      return;
    }
    const msgId = this.messageId(pid, topic, payload);
    const located = this.ctx.locator.streamOf(mapped.subject);
    const store = (stream: string | undefined): Promise<{ reason: ReasonCodeValue; message?: string }> => {
      if (stream !== undefined) return this.store(mapped.subject, mapped.payload, headers, msgId, pid, packet.dup);
      if (retained === undefined) return this.notStored(mapped.subject, payload, headers);
      // no stream, but retained: stored as the topic's retained message, delivered to whoever listens now
      this.ctx.nc.publish(mapped.subject, mapped.payload, { headers });
      return Promise.resolve({ reason: ReasonCode.Success });
    };
    const stored = located instanceof Promise ? located.then(store) : store(located.stream);
    this.chainAck(qos, pid, endWhenSettled(span, retained === undefined ? stored : Promise.all([stored, retained]).then(([r]) => r)));
  }

  /**
   * A format message (Telegraf, Homie) expanded into readings: each within the publisher's permissions (one that
   * is not, such as a Homie device publishing under another device's name, sends the whole message to REJECTED
   * with the reason), then published (QoS 0) or stored, each under the message's id and its index (a
   * retransmission stores nothing twice); acknowledged once all are stored. Not retained.
   */
  private publishReadings(qos: QoS, pid: number, user: ValidatedUser, topic: string, packet: IPublishPacket, payload: Buffer, readings: readonly Reading[], now: number): void {
    const headers = headersFromPublish(this.clientId, packet, now);
    const refused = readings.find((r) => !mayPublish(user.permissions, r.subject));
    if (refused !== undefined) {
      const reason = `${user.name} may not publish ${refused.subject} (a device publishes under its own name and site)`;
      this.log.info({ clientId: this.clientId, subject: refused.subject }, "format message refused by permissions");
      this.chainAck(qos, pid, this.ctx.rejected(topicToSubject(topic), payload, headers, reason).then(() => ({ reason: ReasonCode.NotAuthorized, message: reason })));
      return;
    }
    if (qos === 0) {
      for (const r of readings) this.ctx.nc.publish(r.subject, r.payload, { headers });
      ingressMetrics.published(0, "forwarded");
      return;
    }
    const msgId = this.messageId(pid, topic, payload);
    const stored = Promise.all(readings.map((r, i) => this.ctx.publisher.publish(r.subject, r.payload, { msgId: `${msgId}.${i}`, headers }))).then(() => ({ reason: ReasonCode.Success }));
    this.chainAck(qos, pid, stored);
  }

  /** A device's connect or disconnect, for the hub's device registry (other roles are no devices). */
  private presence(event: "connect" | "disconnect"): void {
    const u = this.user;
    if (u === undefined || u.role === undefined || !DEVICE_ROLES.has(u.role)) return;
    const p: IngressPresence = { event, name: u.name, ...(u.site === undefined ? {} : { site: u.site }), role: u.role, publicKey: u.publicKey, tags: u.tags, protocol: `mqtt-${PROTOCOL_NAMES[this.version] ?? String(this.version)}`, at: Date.now() };
    this.ctx.nc.publish(INGRESS_PRESENCE_SUBJECT(u.site, u.name), JSON.stringify(p));
  }

  /** A Homie v4 device's attribute (`homie/<device>/$state`, …) for the registry, when the publisher is that device. */
  private homieAttribute(user: ValidatedUser, a: NonNullable<MappedMessage["homieAttribute"]>, now: number): void {
    if (user.site !== undefined && !mayPublish(user.permissions, `telemetry.${user.site}.${a.device}.x`)) return;
    const body: HomieAttribute = { device: a.device, ...(user.site === undefined ? {} : { site: user.site }), attribute: a.attribute, value: a.value.slice(0, 1_024), at: now };
    this.ctx.nc.publish(HOMIE_ATTRIBUTES(user.site, a.device), JSON.stringify(body));
  }

  /** Publish permissions per (valid) topic, remembered: a device publishes to few topics, many times. */
  private readonly publishAllowed = new Map<string, boolean>();

  private mayPublishCached(user: ValidatedUser, topic: string, subject: string): boolean {
    let ok = this.publishAllowed.get(topic);
    if (ok === undefined) {
      ok = mayPublish(user.permissions, subject);
      if (this.publishAllowed.size >= 1_024) this.publishAllowed.clear();
      this.publishAllowed.set(topic, ok);
    }
    return ok;
  }

  /** Message id of a QoS 1/2 publish: the same for a retransmission (same session, packet id and content). */
  private messageId(pid: number, topic: string, payload: Buffer): string {
    const head = Buffer.from(`${this.clientId}\u0000${this.session?.epoch ?? ""}\u0000${pid}\u0000${topic}\u0000`, "utf8");
    return `mqtt:${hash("sha256", Buffer.concat([head, payload]), "base64url").slice(0, 32)}`;
  }

  /**
   * Stores into JetStream under a message id that a retransmission shares (see messageId), so a publish
   * retried after a lost acknowledgement (the ingress died, the connection broke) is stored once.
   *
   * A DUP flag of 0 cannot be trusted to mean "new" (MQTT.js never sets DUP on a retransmission). What can
   * be: a client reuses a packet id only after it was acknowledged, so on one connection a packet id that
   * comes again with the same content (DUP 0) is a new message and gets a fresh id (`<id>:<n>`); the first use
   * of a packet id on a connection may be a retransmission and keeps the plain id. Across connections the
   * session epoch (in the id) changes after a DISCONNECT, when there is nothing to retransmit, and stays
   * after an abrupt end, when there may be. What remains: after an abrupt end, a new message whose packet id,
   * topic and payload equal one sent just before the end is taken for its retransmission (within the stream's
   * duplicate window).
   */
  private async store(subject: string, payload: Uint8Array, headers: MsgHdrs, msgId: string, pid: number, dup: boolean): Promise<{ reason: ReasonCodeValue; message?: string }> {
    // per packet id: a 32-bit fingerprint of the last base id and how often it came again (320 KiB, lazily)
    this.pidFingerprints ??= new Uint32Array(65_536);
    this.pidRepeats ??= new Uint16Array(65_536);
    const fp = (fingerprint(msgId) | 1) >>> 0; // never 0, which marks a packet id unused on this connection
    const again = this.pidFingerprints[pid] === fp;
    // DUP set: a retransmission of the message last sent with this packet id, under the same id
    const n = again ? (this.pidRepeats[pid] ?? 0) + (dup ? 0 : 1) : 0;
    this.pidFingerprints[pid] = fp;
    this.pidRepeats[pid] = n;
    const id = n === 0 ? msgId : `${msgId}:${n}`;
    try {
      await this.ctx.publisher.publish(subject, payload, { msgId: id, headers });
      return { reason: ReasonCode.Success };
    } catch (err) {
      if (err instanceof PublishError && err.code === "FABRIC_ERR_NO_STREAM") return this.notStored(subject, payload, headers);
      throw err;
    }
  }

  /**
   * A QoS 1/2 publish to a subject no stream stores: it cannot be stored, so it is not delivered either; it is
   * kept in REJECTED and acknowledged with 0x90 (MQTT 3: acknowledged, as every refused payload is).
   */
  private async notStored(subject: string, payload: Uint8Array, headers: MsgHdrs): Promise<{ reason: ReasonCodeValue; message: string }> {
    await this.ctx.rejected(subject, payload, headers, `no stream stores ${subject}`);
    return { reason: ReasonCode.TopicNameInvalid, message: "no stream stores this topic: QoS 1/2 needs one; the message is kept in REJECTED" };
  }

  /**
   * Acknowledgements go out in the order the publishes came in (MQTT 4.6), each once its message is stored:
   * a queue of outcomes, flushed from the head as far as they are known.
   */
  private readonly ackQueue: { qos: 1 | 2; pid: number; at: number; result?: { reason: ReasonCodeValue; message?: string | undefined } | Error }[] = [];

  private chainAck(qos: QoS, pid: number, outcome: Promise<{ reason: ReasonCodeValue; message?: string | undefined }>): void {
    if (qos === 0) {
      outcome.then(
        (r) => ingressMetrics.published(0, publishResultOf(r.reason)),
        (err: unknown) => {
          ingressMetrics.published(0, "failed");
          this.log.warn({ err: errorMessage(err) }, "QoS 0 message not stored");
        },
      );
      return;
    }
    const entry: (typeof this.ackQueue)[number] = { qos, pid, at: performance.now() };
    this.ackQueue.push(entry);
    outcome.then(
      (r) => {
        entry.result = r;
        this.flushAcks();
      },
      (err: unknown) => {
        entry.result = err instanceof Error ? err : new Error(String(err));
        this.flushAcks();
      },
    );
  }

  private flushAcks(): void {
    for (;;) {
      const head = this.ackQueue[0];
      if (head?.result === undefined) return;
      this.ackQueue.shift();
      const r = head.result;
      ingressMetrics.published(head.qos, r instanceof Error ? "failed" : publishResultOf(r.reason));
      ingressMetrics.acknowledged(head.qos, head.at);
      if (r instanceof Error) {
        // not stored: never acknowledged. MQTT 5 is told; MQTT 3 can only be disconnected, and retries.
        this.log.warn({ clientId: this.clientId, err: errorMessage(r) }, "publish not stored");
        if (this.version === 5) this.settleInbound(head.qos, head.pid, ReasonCode.ImplementationSpecificError, `not stored: ${isFabricError(r) ? r.message : "error"}`);
        else this.kick(ReasonCode.ServerUnavailable, "message could not be stored");
      } else {
        this.settleInbound(head.qos, head.pid, r.reason, r.message);
      }
    }
  }

  private settleInbound(qos: QoS, pid: number, reason: ReasonCodeValue, message?: string): void {
    if (qos === 0) return;
    this.inboundInflight--;
    if (this.inboundInflight <= this.ctx.config.receiveMaximum && this.socket.isPaused()) this.socket.resume();
    const ok = reason === ReasonCode.Success;
    const props = this.version === 5 && !ok && message !== undefined ? { properties: { reasonString: message.slice(0, 200) } } : {};
    const reasonCode = this.version === 5 && !ok ? { reasonCode: reason } : {};
    if (qos === 1) {
      if (ok) this.writeAck(0x40, pid);
      else this.write({ cmd: "puback", messageId: pid, ...reasonCode, ...props });
    } else {
      if (ok || reason === ReasonCode.PayloadFormatInvalid || reason === ReasonCode.TopicNameInvalid) this.awaitingRelease.add(pid);
      if (ok) this.writeAck(0x50, pid);
      else this.write({ cmd: "pubrec", messageId: pid, ...reasonCode, ...props });
    }
  }

  // --- SUBSCRIBE ---

  private async onSubscribe(packet: ISubscribePacket): Promise<void> {
    const user = this.user;
    if (user === undefined || this.session === undefined) return;
    const subscriptionId = packet.properties?.subscriptionIdentifier;
    const granted: number[] = [];
    const retainedToSend: { filter: string; stored: StoredSubscription }[] = [];
    for (const s of packet.subscriptions) {
      const shared = parseSharedFilter(s.topic);
      const filter = shared?.filter ?? s.topic;
      const problem = topicFilterProblem(filter) ?? (s.topic.startsWith("$share/") && shared === undefined ? "malformed shared subscription" : undefined);
      if (problem !== undefined) {
        granted.push(this.version === 5 ? ReasonCode.TopicFilterInvalid : 0x80);
        continue;
      }
      if (shared !== undefined && s.nl === true) {
        throw new MqttError(ReasonCode.ProtocolError, "no-local is not allowed on a shared subscription");
      }
      // for `a/#` the level `a` itself may lie outside the permissions: then only `a/...` is delivered
      const main = filterToSubjects(filter).at(-1) ?? "";
      if (!maySubscribe(user.permissions, main)) {
        this.log.info({ clientId: this.clientId, filter }, "subscription refused by permissions");
        granted.push(this.version === 5 ? ReasonCode.NotAuthorized : 0x80);
        continue;
      }
      const qos = Math.min(s.qos, 2) as QoS;
      const stored: StoredSubscription = {
        filter: s.topic,
        qos,
        noLocal: s.nl === true,
        retainAsPublished: s.rap === true,
        retainHandling: s.rh ?? 0,
        ...(subscriptionId === undefined ? {} : { subscriptionId }),
        ...(shared === undefined ? {} : { shareGroup: shared.group }),
      };
      const existed = this.subscriptions.has(s.topic);
      this.deactivate(s.topic);
      this.session.subscriptions = [...this.session.subscriptions.filter((x) => x.filter !== s.topic), stored];
      this.activate(stored);
      granted.push(qos);
      if (shared === undefined && (stored.retainHandling === 0 || (stored.retainHandling === 1 && !existed))) retainedToSend.push({ filter, stored });
    }
    if (this.session.expirySec > 0) await this.ctx.store.saveSession(this.session);
    await this.syncDurable();
    // the subscriptions are in place on the server before the SUBACK says so
    await this.ctx.nc.flush();
    this.write({ cmd: "suback", messageId: packet.messageId ?? 0, granted });
    for (const r of retainedToSend) {
      for (const m of await this.ctx.store.retainedFor(r.filter)) {
        if (!topicMatches(r.filter, m.topic)) continue;
        const { properties, expired } = propertiesFromHeaders(m.headers, undefined, Date.now());
        if (expired) continue;
        if (r.stored.subscriptionId !== undefined) properties.subscriptionIdentifier = r.stored.subscriptionId;
        this.sendPublish(m.topic, Buffer.from(m.payload), Math.min(m.qos, r.stored.qos) as QoS, true, properties);
      }
    }
  }

  private activate(stored: StoredSubscription): void {
    const shared = parseSharedFilter(stored.filter);
    const filter = shared?.filter ?? stored.filter;
    const permissions = this.user?.permissions ?? {};
    const subjects = filterToSubjects(filter).filter((subject) => maySubscribe(permissions, subject));
    const durableStream = this.session !== undefined && this.session.expirySec > 0 && stored.qos > 0 && stored.shareGroup === undefined ? streamFor(subjects) : undefined;
    if (durableStream !== undefined) {
      this.subscriptions.set(stored.filter, { stored, nats: [], durableStream, subjects });
      return;
    }
    const nats = subjects.map((subject) =>
      this.ctx.nc.subscribe(subject, {
        ...(stored.shareGroup === undefined ? {} : { queue: `mqtt-share.${stored.shareGroup}` }),
        callback: (err, msg) => {
          if (err === null) this.deliver(msg, stored);
        },
      }),
    );
    this.subscriptions.set(stored.filter, { stored, nats, subjects });
  }

  private deactivate(filter: string): boolean {
    const active = this.subscriptions.get(filter);
    if (active === undefined) return false;
    for (const s of active.nats) s.unsubscribe();
    this.subscriptions.delete(filter);
    return true;
  }

  private async onUnsubscribe(packet: IUnsubscribePacket): Promise<void> {
    const codes: number[] = [];
    for (const filter of packet.unsubscriptions) {
      const existed = this.deactivate(filter);
      if (this.session !== undefined) this.session.subscriptions = this.session.subscriptions.filter((s) => s.filter !== filter);
      codes.push(existed ? ReasonCode.Success : ReasonCode.NoSubscriptionExisted);
    }
    if (this.session !== undefined && this.session.expirySec > 0) await this.ctx.store.saveSession(this.session);
    await this.syncDurable();
    if (this.version === 5) this.write({ cmd: "unsuback", messageId: packet.messageId ?? 0, granted: codes });
    else this.write({ cmd: "unsuback", messageId: packet.messageId ?? 0, granted: [] });
  }

  // --- delivery to the client ---

  private deliver(msg: Msg, via: StoredSubscription): void {
    if (!this.connected || this.closed) return;
    if (!this.connackSent) {
      this.early.push([msg, via]);
      return;
    }
    const topic = subjectToTopic(msg.subject);
    // overlapping subscriptions: NATS delivers one copy per matching subscription, back to back; the first
    // copy is delivered at the highest QoS of all matches and the others are dropped
    const dropKey = `${msg.subject}\u0000${msg.data.length}`;
    const toDrop = this.copiesToDrop.get(dropKey) ?? 0;
    if (toDrop > 0) {
      if (toDrop === 1) this.copiesToDrop.delete(dropKey);
      else this.copiesToDrop.set(dropKey, toDrop - 1);
      return;
    }
    const matching = via.shareGroup !== undefined ? [via] : [...this.subscriptions.values()].map((a) => a.stored).filter((s) => s.shareGroup === undefined && topicMatches(s.filter, topic));
    if (matching.length === 0) return;
    const natsCopies = via.shareGroup !== undefined ? 0 : this.natsCopies(msg.subject) - 1;
    if (natsCopies > 0) this.copiesToDrop.set(dropKey, (this.copiesToDrop.get(dropKey) ?? 0) + natsCopies);
    const now = Date.now();
    const { properties, expired, origin, retained, publishedQos } = propertiesFromHeaders(msg.headers, msg.reply === undefined || msg.reply === "" ? undefined : subjectToTopic(msg.reply), now);
    if (expired) return;
    const eligible = matching.filter((s) => !(s.noLocal && origin === this.clientId));
    if (eligible.length === 0) return;
    const qos = Math.min(Math.max(...eligible.map((s) => s.qos)), publishedQos) as QoS;
    const ids = eligible.flatMap((s) => (s.subscriptionId === undefined ? [] : [s.subscriptionId]));
    if (ids.length > 0) properties.subscriptionIdentifier = ids.length === 1 ? (ids[0] ?? 0) : ids;
    const retain = retained && eligible.some((s) => s.retainAsPublished);
    if (msg.reply !== undefined && msg.reply !== "" && this.user?.permissions.resp !== undefined) this.grantResponse(msg.reply);
    this.sendPublish(topic, Buffer.from(msg.data), qos, retain, properties);
  }

  /** How many of this connection's NATS subscriptions match a subject (each gets its own copy). */
  private natsCopies(subject: string): number {
    let n = 0;
    for (const a of this.subscriptions.values()) {
      if (a.stored.shareGroup !== undefined) continue;
      for (const s of a.nats) if (subjectMatches(s.getSubject(), subject)) n++;
    }
    return n;
  }

  private grantResponse(reply: string): void {
    const ttl = this.user?.permissions.resp?.ttl ?? 0;
    this.responseGrants.set(reply, ttl > 0 ? Date.now() + ttl / 1e6 : Number.MAX_SAFE_INTEGER);
    if (this.responseGrants.size > 1_024) {
      const first = this.responseGrants.keys().next().value;
      if (first !== undefined) this.responseGrants.delete(first);
    }
  }

  private useResponseGrant(subject: string): boolean {
    const until = this.responseGrants.get(subject);
    if (until === undefined) return false;
    this.responseGrants.delete(subject);
    return until >= Date.now();
  }

  private sendPublish(topic: string, payload: Buffer, qos: QoS, retain: boolean, properties: NonNullable<IPublishPacket["properties"]>, js?: JsMsg): void {
    const packet: IPublishPacket = { cmd: "publish", topic, payload, qos, retain, dup: js?.redelivered === true };
    if (this.version === 5) {
      const alias = this.outAlias(topic);
      if (alias !== undefined) {
        properties.topicAlias = alias.alias;
        if (alias.known) packet.topic = "";
      }
      if (Object.keys(properties).length > 0) packet.properties = properties;
    }
    if (qos === 0) {
      if (this.socket.writableLength > MAX_WRITE_BUFFER) {
        this.droppedQoS0++;
        ingressMetrics.droppedDelivery();
        return;
      }
      this.write(packet);
      return;
    }
    if (this.outbound.size >= this.clientReceiveMaximum) {
      this.outboundQueue.push({ packet, js });
      return;
    }
    this.sendInflight(packet, js);
  }

  private outAlias(topic: string): { alias: number; known: boolean } | undefined {
    if (this.clientTopicAliasMaximum === 0) return undefined;
    const known = this.aliasesOut.get(topic);
    if (known !== undefined) return { alias: known, known: true };
    if (this.aliasesOut.size >= this.clientTopicAliasMaximum) return undefined;
    const alias = this.aliasesOut.size + 1;
    this.aliasesOut.set(topic, alias);
    return { alias, known: false };
  }

  private sendInflight(packet: IPublishPacket, js?: JsMsg): void {
    // a message the client did not acknowledge on its last connection goes again with its packet id (MQTT 4.4)
    const previous = js?.redelivered === true ? this.session?.inflightOut?.[`${js.info.stream}:${js.seq}`] : undefined;
    let pid = previous !== undefined && !this.outbound.has(previous) ? previous : this.nextPacketId;
    for (let i = 0; i < 65_535 && this.outbound.has(pid); i++) pid = (pid % 65_535) + 1;
    if (pid !== previous) this.nextPacketId = (pid % 65_535) + 1;
    packet.messageId = pid;
    this.outbound.set(pid, { packet, released: false, js });
    this.write(packet);
  }

  private onPubrec(pid: number, reasonCode: number | undefined): void {
    const inflight = this.outbound.get(pid);
    if (inflight === undefined || (reasonCode !== undefined && reasonCode >= 0x80)) {
      this.onOutboundDone(pid);
      return;
    }
    inflight.released = true;
    this.write({ cmd: "pubrel", messageId: pid });
  }

  private onOutboundDone(pid: number): void {
    const done = this.outbound.get(pid);
    if (done === undefined) return;
    this.outbound.delete(pid);
    done.js?.ack();
    const next = this.outboundQueue.shift();
    if (next !== undefined) this.sendInflight(next.packet, next.js);
  }

  // --- the end ---

  private async onSocketClosed(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      await this.cleanup();
    }
  }

  private cleaned = false;

  private async cleanup(): Promise<void> {
    if (this.cleaned) return;
    this.cleaned = true;
    if (this.counted) ingressMetrics.disconnected(this.version);
    clearTimeout(this.connectTimer);
    clearInterval(this.keepaliveTimer);
    clearTimeout(this.expiryTimer);
    for (const a of this.subscriptions.values()) for (const s of a.nats) s.unsubscribe();
    this.subscriptions.clear();
    const inflight = this.inflightOutRecord();
    if (this.durable !== undefined) {
      await this.durable.stop().catch(() => undefined);
      // what the client did not acknowledge is offered again at once when it is back
      for (const o of this.outbound.values()) o.js?.nak();
      for (const q of this.outboundQueue.splice(0)) q.js?.nak();
    }
    if (!this.connected) return;
    const takenOver = this.ctx.registry.release(this);
    const graceful = this.endReason.kind === "disconnect" && !this.endReason.withWill;
    const revoked = this.endReason.kind === "error" && this.endReason.reason === ReasonCode.NotAuthorized;
    if (this.will !== undefined && !graceful && !revoked && this.user !== undefined) {
      // taken over by a connection that continues the session: the will waits for its delay like any other
      // (and is cancelled, the client being back); taken over by a new session: the will goes at once
      if (!(takenOver && this.takenOverByResume && this.will.delaySec > 0)) this.ctx.wills.schedule(this.clientId, this.id, this.user, this.will, takenOver);
      else await this.ctx.durableWills.forget(this.clientId, this.id).catch(() => undefined);
    } else if (this.will !== undefined) {
      await this.ctx.durableWills.forget(this.clientId, this.id).catch(() => undefined);
    }
    const session = this.session;
    if (session !== undefined && !takenOver) {
      try {
        if (session.expirySec > 0) {
          await this.ctx.store.saveSession({ ...session, disconnectedAt: Date.now(), graceful: this.endReason.kind === "disconnect", inflightOut: inflight });
        }
        else if (this.hadStoredSession) {
          await this.ctx.store.deleteSession(this.clientId);
          if (this.durable !== undefined) await DurableSessionConsumers.deleteAll(this.ctx.nc, this.clientId);
        }
      } catch (err) {
        this.log.warn({ err: errorMessage(err) }, "could not save the session");
      }
    }
    if (this.counted) this.presence("disconnect");
    this.log.info({ clientId: this.clientId, end: this.endReason.kind }, "client disconnected");
  }
}

/**
 * The hot path: a PUBLISH without properties (MQTT 3, or 5 with an empty property block) decoded by hand
 * (header flags, topic, packet id, payload); anything else, or anything odd, goes to mqtt-packet's parser,
 * which also reports malformed packets.
 */
function decodeSimplePublish(bytes: Buffer, version: Version): IPublishPacket | undefined {
  const b0 = bytes[0] ?? 0;
  if (b0 >> 4 !== 3) return undefined;
  const q = (b0 >> 1) & 3;
  if (q === 3) return undefined;
  const qos = q as QoS;
  let i = 1;
  while ((bytes[i] ?? 0) & 0x80) i++;
  i++;
  const topicLen = ((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0);
  i += 2;
  if (i + topicLen > bytes.length) return undefined;
  const topicBytes = bytes.subarray(i, i + topicLen);
  i += topicLen;
  let messageId: number | undefined;
  if (qos > 0) {
    if (i + 2 > bytes.length) return undefined;
    messageId = ((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0);
    if (messageId === 0) return undefined;
    i += 2;
  }
  if (version === 5) {
    if (bytes[i] !== 0) return undefined; // properties: the full parser
    i += 1;
  }
  if (i > bytes.length) return undefined;
  let topic: string;
  try {
    topic = UTF8.decode(topicBytes);
  } catch {
    return undefined; // invalid UTF-8: the full parser refuses it
  }
  return { cmd: "publish", qos, dup: (b0 & 8) !== 0, retain: (b0 & 1) !== 0, topic, payload: bytes.subarray(i), ...(messageId === undefined ? {} : { messageId }) };
}

const UTF8 = new TextDecoder("utf-8", { fatal: true });

const REPLACEMENT_UTF8 = Buffer.from("\uFFFD", "utf8");

/**
 * mqtt-packet decodes strings leniently (bad bytes become U+FFFD). A decoded U+FFFD that the raw bytes do not
 * hold as such came from ill-formed UTF-8.
 */
function illFormedUtf8(packet: Packet, raw: Buffer): boolean {
  const strings: (string | undefined)[] = [];
  if (packet.cmd === "connect") strings.push(packet.clientId, packet.username, packet.will?.topic);
  else if (packet.cmd === "publish") strings.push(packet.topic);
  else if (packet.cmd === "subscribe") strings.push(...packet.subscriptions.map((x) => x.topic));
  else if (packet.cmd === "unsubscribe") strings.push(...packet.unsubscriptions);
  if (!strings.some((x) => x?.includes("\uFFFD") === true)) return false;
  const count = (strings.join("").match(/\uFFFD/g) ?? []).length;
  let inRaw = 0;
  for (let i = raw.indexOf(REPLACEMENT_UTF8); i >= 0; i = raw.indexOf(REPLACEMENT_UTF8, i + 3)) inRaw++;
  return inRaw < count;
}

/** FNV-1a of a string: a cheap 32-bit fingerprint. */
function fingerprint(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h;
}

function isUtf8(b: Buffer): boolean {
  try {
    new TextDecoder("utf-8", { fatal: true }).decode(b);
    return true;
  } catch {
    return false;
  }
}

export type { Will };

/** The metrics' result of a settled publish: stored, or kept in REJECTED (a refused payload, no stream). */
function publishResultOf(reason: ReasonCodeValue): "stored" | "rejected" {
  return reason === ReasonCode.Success ? "stored" : "rejected";
}
