/**
 * Helpers for the MQTT ingress protocol tests: MQTT.js clients with cleanup, a collector of received
 * messages, credentials (bearer `mqtt` devices and proof-of-possession `service` users), JetStream counts,
 * and a raw TCP client that speaks MQTT through mqtt-packet (or hand-built bytes) and records every packet
 * the ingress sends back, so reason codes and packet flows can be checked exactly.
 */
import { connect as netConnect, type Socket } from "node:net";
import mqtt, { type IClientOptions, type IPublishPacket as MqttJsPublishPacket, type MqttClient } from "mqtt";
import { generate, parser as mqttParser, type IConnackPacket, type IConnectPacket, type Packet } from "mqtt-packet";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { issueUser, keyPairFromSeed } from "../../identity/index.js";
import { proofPassword } from "../../ingress/index.js";
import { connectAs, startTestHub, type Harness, type TestHub } from "../harness/index.js";

export type Version = 3 | 4 | 5;

export const VERSION_NAME: Readonly<Record<Version, string>> = { 3: "3.1", 4: "3.1.1", 5: "5.0" };

/** MQTT.js options for a protocol version (3.1 needs the old protocol name). */
export function versionOptions(version: Version): IClientOptions {
  return version === 3 ? { protocolVersion: 3, protocolId: "MQIsdp" } : { protocolVersion: version };
}

export function mqttUrl(hub: TestHub): string {
  return `mqtt://127.0.0.1:${hub.mqtt?.tcp ?? 0}`;
}

export function mqttPort(hub: TestHub): number {
  const port = hub.mqtt?.tcp ?? 0;
  if (port === 0) throw new Error("the hub runs no MQTT ingress");
  return port;
}

/** A bearer `mqtt` device: username = name, password = JWT. */
export function mqttDevice(hub: TestHub, name: string, site = "plant-a"): { name: string; site: string; jwt: string; seed: string } {
  const r = issueUser(hub.keystore, { account: "fleet", role: "mqtt", name, site });
  return { name, site, jwt: r.jwt, seed: r.seed ?? "" };
}

/** A `service` user (the whole account, not a bearer token: its password is a proof of possession). */
export interface ServiceUser {
  name: string;
  jwt: string;
  seed: string;
  creds: string;
  /** A fresh proof-of-possession password for this client id (never the same timestamp twice). */
  password(clientId: string): string;
  /** MQTT.js options: username and a fresh proof password for the client id. */
  auth(clientId: string): { clientId: string; username: string; password: string };
}

let lastProofTs = 0;

export function serviceUser(hub: TestHub, name: string): ServiceUser {
  const r = issueUser(hub.keystore, { account: "fleet", role: "service", name });
  const seed = r.seed ?? "";
  const kp = keyPairFromSeed(seed);
  const password = (clientId: string): string => {
    // a proof is refused when replayed (same key, timestamp and client id): keep timestamps unique
    lastProofTs = Math.max(Date.now(), lastProofTs + 1);
    return proofPassword(r.jwt, name, clientId, (data) => kp.sign(data), lastProofTs);
  };
  return { name, jwt: r.jwt, seed, creds: r.creds ?? "", password, auth: (clientId) => ({ clientId, username: name, password: password(clientId) }) };
}

export interface Connected {
  client: MqttClient;
  connack: IConnackPacket;
}

/**
 * Connects with MQTT.js (no reconnect) and resolves with the client and its CONNACK; rejects with the
 * client's error when refused. The client is ended when the harness is disposed.
 */
export async function connectMqtt(h: Harness, url: string, options: IClientOptions, setup?: (c: MqttClient) => void): Promise<Connected> {
  const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 10_000, ...options });
  h.defer(() => client.endAsync(true));
  setup?.(client);
  return new Promise<Connected>((resolve, reject) => {
    const onError = (err: Error): void => {
      cleanup();
      client.end(true);
      reject(err);
    };
    const onClose = (): void => {
      cleanup();
      reject(new Error("connection closed before CONNACK"));
    };
    const onConnect = (connack: IConnackPacket): void => {
      cleanup();
      resolve({ client, connack });
    };
    const cleanup = (): void => {
      client.off("error", onError);
      client.off("close", onClose);
      client.off("connect", onConnect);
    };
    client.on("error", onError);
    client.on("close", onClose);
    client.on("connect", onConnect);
  });
}

/** Resolves with the MQTT.js error of a refused connection (fails the test when it connects). */
export async function connectRefused(h: Harness, url: string, options: IClientOptions): Promise<Error & { code?: number }> {
  try {
    const { client } = await connectMqtt(h, url, options);
    await client.endAsync(true);
  } catch (err) {
    return err as Error & { code?: number };
  }
  throw new Error("the connection was accepted but should have been refused");
}

export interface Received {
  topic: string;
  payload: string;
  packet: MqttJsPublishPacket;
}

/** Collects every message a client receives, and waits for the ones a test expects. */
export class Inbox {
  readonly messages: Received[] = [];
  private waiters: (() => void)[] = [];

  constructor(client: MqttClient) {
    client.on("message", (topic, payload, packet) => {
      this.messages.push({ topic, payload: payload.toString("utf8"), packet });
      for (const w of this.waiters.splice(0)) w();
    });
  }

  matching(pred: (m: Received) => boolean): Received[] {
    return this.messages.filter(pred);
  }

  /** Waits until `n` messages match (default 1) and returns them. */
  async waitFor(pred: (m: Received) => boolean, n = 1, timeoutMs = 10_000): Promise<Received[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const got = this.matching(pred);
      if (got.length >= n) return got;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${n} message(s); got ${got.length}: ${JSON.stringify(this.messages.map((m) => m.topic))}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  async waitTopic(topic: string, n = 1, timeoutMs = 10_000): Promise<Received[]> {
    return this.waitFor((m) => m.topic === topic, n, timeoutMs);
  }

  count(topic: string): number {
    return this.matching((m) => m.topic === topic).length;
  }
}

/** How many messages a stream holds on one subject. */
export async function streamCount(hub: TestHub, stream: string, subject: string): Promise<number> {
  const nc = await natsService(hub, "stream-counter");
  try {
    const info = await (await jetstreamManager(nc)).streams.info(stream, { subjects_filter: subject });
    // every subject the filter matches (a wildcard filter included)
    return Object.values(info.state.subjects ?? {}).reduce((a, b) => a + b, 0);
  } finally {
    await nc.close();
  }
}

/** A NATS connection with a fresh service credential (closed by the caller or the harness). */
export async function natsService(hub: TestHub, name: string, h?: Harness): Promise<NatsConnection> {
  const svc = issueUser(hub.keystore, { account: "fleet", role: "service", name });
  const nc = await connectAs(hub.urls, svc.creds ?? "");
  h?.defer(() => nc.close());
  return nc;
}

/** Resolves once the client's connection closes (MQTT.js `close`). */
export function closedPromise(client: MqttClient): Promise<void> {
  return new Promise<void>((resolve) => client.once("close", () => resolve()));
}

/**
 * A raw MQTT client on a TCP socket: sends packets built by mqtt-packet or bytes built by hand, and parses
 * what the server sends into packets (for the protocol version given).
 */
export class RawClient {
  readonly received: Packet[] = [];
  readonly parseErrors: Error[] = [];
  closedAt: number | undefined;
  readonly openedAt = Date.now();
  private readonly consumed = new Set<number>();
  private waiters: (() => void)[] = [];
  private readonly closedP: Promise<void>;

  private constructor(
    readonly socket: Socket,
    readonly version: Version,
  ) {
    const p = mqttParser({ protocolVersion: version });
    p.on("packet", (packet: Packet) => {
      this.received.push(packet);
      this.wake();
    });
    p.on("error", (err: Error) => this.parseErrors.push(err));
    socket.on("data", (chunk: Buffer) => p.parse(chunk));
    socket.on("error", () => undefined); // a reset by the server shows as a close
    this.closedP = new Promise<void>((resolve) =>
      socket.once("close", () => {
        this.closedAt = Date.now();
        this.wake();
        resolve();
      }),
    );
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  static async open(h: Harness, port: number, version: Version = 4): Promise<RawClient> {
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s = netConnect({ host: "127.0.0.1", port }, () => {
        s.off("error", reject);
        resolve(s);
      });
      s.once("error", reject);
    });
    h.defer(() => {
      socket.destroy();
    });
    return new RawClient(socket, version);
  }

  get closed(): boolean {
    return this.closedAt !== undefined;
  }

  send(packet: Packet): void {
    this.socket.write(generate(packet, { protocolVersion: this.version }));
  }

  sendBytes(bytes: Buffer | number[]): void {
    this.socket.write(Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes));
  }

  /** Waits for the first packet of the given type not yet returned by `next` (others stay available). */
  async next<C extends Packet["cmd"]>(cmd: C, timeoutMs = 10_000): Promise<Extract<Packet, { cmd: C }>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      for (let i = 0; i < this.received.length; i++) {
        const p = this.received[i];
        if (p?.cmd === cmd && !this.consumed.has(i)) {
          this.consumed.add(i);
          return p as Extract<Packet, { cmd: C }>;
        }
      }
      const left = deadline - Date.now();
      if (this.closed || left <= 0) {
        throw new Error(`no ${cmd.toUpperCase()} (${this.closed ? "connection closed" : "timeout"}); got ${this.received.map((p) => p.cmd).join(", ") || "nothing"}`);
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Resolves once the server closed the connection; rejects after the timeout. */
  async waitClosed(timeoutMs = 10_000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.closedP,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`connection still open after ${timeoutMs} ms`)), timeoutMs);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Sends CONNECT and returns the CONNACK. */
  async connect(packet: Omit<IConnectPacket, "cmd" | "protocolVersion" | "protocolId"> & { protocolId?: IConnectPacket["protocolId"] }): Promise<IConnackPacket> {
    this.send({ cmd: "connect", protocolVersion: this.version, protocolId: this.version === 3 ? "MQIsdp" : "MQTT", keepalive: 0, ...packet });
    return this.next("connack");
  }

  end(): void {
    this.socket.destroy();
  }
}

/** A raw client already connected (CONNACK 0) as a service user. */
export async function rawService(h: Harness, hub: TestHub, user: ServiceUser, clientId: string, version: Version = 5, extra: Partial<IConnectPacket> = {}): Promise<RawClient> {
  const raw = await RawClient.open(h, mqttPort(hub), version);
  const connack = await raw.connect({ clientId, username: user.name, password: Buffer.from(user.password(clientId)), clean: true, ...extra });
  const code = version === 5 ? connack.reasonCode : connack.returnCode;
  if (code !== 0) throw new Error(`raw connect refused: ${code}`);
  return raw;
}

/** A JSON telemetry reading as the contract wants it. */
export function reading(value: number): string {
  return JSON.stringify({ value, ts: Date.now() });
}

export interface MqttTestbed {
  hub: TestHub;
  url: string;
  svc: ServiceUser;
  /** A NATS connection of the service user. */
  nc: NatsConnection;
  /** Publishes through the ingress like any MQTT 5 client. */
  pub: MqttClient;
}

/** What most protocol test files start from: a hub with the ingress, a service user, a NATS and an MQTT 5 client. */
export async function mqttTestbed(h: Harness, name: string, ingress?: Record<string, unknown>): Promise<MqttTestbed> {
  const hub = await startTestHub(h, { mqtt: true, ...(ingress === undefined ? {} : { ingress }) });
  const url = mqttUrl(hub);
  const svc = serviceUser(hub, `${name}-svc`);
  const nc = await natsService(hub, `${name}-nats`, h);
  const pub = (await connectMqtt(h, url, { ...versionOptions(5), ...svc.auth(`${name}-pub`) })).client;
  return { hub, url, svc, nc, pub };
}
