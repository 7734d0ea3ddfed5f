/**
 * MQTT ingress, connecting: CONNACK return codes (3.1/3.1.1) and reason codes (5.0), client identifiers
 * (empty, assigned, with characters NATS cannot carry), session takeover, keepalive, credentials (bearer,
 * proof of possession, MQTT 5 enhanced authentication FABRIC-NKEY, forged and expired ones).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { MqttClient } from "mqtt";
import type { IAuthPacket } from "mqtt-packet";
import { createKeyPair, encodeJwt, issueUser, keyPairFromSeed } from "../../identity/index.js";
import { Harness, startTestHub, type TestHub } from "../harness/index.js";
import {
  closedPromise,
  connectMqtt,
  connectRefused,
  Inbox,
  mqttDevice,
  mqttPort,
  mqttUrl,
  RawClient,
  reading,
  serviceUser,
  VERSION_NAME,
  versionOptions,
  type Version,
} from "./mqtt-helpers.js";

const h = new Harness();
let hub: TestHub;
let url: string;
/** A service client that publishes commands to the devices (through the ingress, like any MQTT client). */
let commander: MqttClient;
afterAll(() => h.dispose());
beforeAll(async () => {
  hub = await startTestHub(h, { mqtt: true });
  url = mqttUrl(hub);
  const svc = serviceUser(hub, "connect-commander");
  commander = (await connectMqtt(h, url, { ...versionOptions(5), ...svc.auth("connect-commander") })).client;
});

async function command(topic: string, payload: string): Promise<void> {
  await commander.publishAsync(topic, payload, { qos: 0 });
}

/** A CONNECT built by hand (mqtt-packet refuses to build some invalid ones): level < 5, no properties. */
function handConnect(protocolName: string, level: number, clientId: string, opts: { clean?: boolean; username?: string; password?: string } = {}): Buffer {
  const str = (s: string): Buffer => {
    const b = Buffer.from(s, "utf8");
    return Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b]);
  };
  const flags = (opts.clean === false ? 0 : 0x02) | (opts.username === undefined ? 0 : 0x80) | (opts.password === undefined ? 0 : 0x40);
  const body = Buffer.concat([
    str(protocolName),
    Buffer.from([level, flags, 0x00, 0x3c]),
    str(clientId),
    ...(opts.username === undefined ? [] : [str(opts.username)]),
    ...(opts.password === undefined ? [] : [str(opts.password)]),
  ]);
  const len: number[] = [];
  let n = body.length;
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    len.push(b);
  } while (n > 0);
  return Buffer.concat([Buffer.from([0x10, ...len]), body]);
}

/** Returns a JWT with the same header and signature but a changed claim (the signature no longer matches). */
function tamper(jwt: string, change: (claims: Record<string, unknown>) => void): string {
  const [head, body, sig] = jwt.split(".") as [string, string, string];
  const claims = JSON.parse(Buffer.from(body, "base64url").toString("utf8")) as Record<string, unknown>;
  change(claims);
  return `${head}.${Buffer.from(JSON.stringify(claims)).toString("base64url")}.${sig}`;
}

/** Re-signs a JWT's claims (changed) with the given signer: a well-formed, correctly signed credential. */
function resign(jwt: string, signerSeed: string, change: (claims: Record<string, unknown>) => void): string {
  const body = jwt.split(".")[1] ?? "";
  const claims = JSON.parse(Buffer.from(body, "base64url").toString("utf8")) as Record<string, unknown> & { iss: string; jti: string };
  change(claims);
  return encodeJwt(claims, keyPairFromSeed(signerSeed));
}

describe("CONNACK codes", () => {
  it.each([3, 4] as const)("MQTT %s: a wrong password gets return code 4, and the connection closes", async (v) => {
    const d = mqttDevice(hub, `badpw-${v}`);
    const raw = await RawClient.open(h, mqttPort(hub), v);
    const connack = await raw.connect({ clientId: `badpw-${v}`, username: d.name, password: Buffer.from("nonsense"), clean: true });
    expect(connack.returnCode).toBe(4);
    expect(connack.sessionPresent).toBe(false);
    await raw.waitClosed(5_000);
  });

  it("MQTT 5: a wrong password gets reason code 0x86, and the connection closes", async () => {
    const d = mqttDevice(hub, "badpw-5");
    const raw = await RawClient.open(h, mqttPort(hub), 5);
    const connack = await raw.connect({ clientId: "badpw-5", username: d.name, password: Buffer.from("nonsense"), clean: true });
    expect(connack.reasonCode).toBe(0x86);
    await raw.waitClosed(5_000);
  });

  it("a username other than the credential's name is refused (4 / 0x86) by MQTT.js too", async () => {
    const d = mqttDevice(hub, "badname");
    const e4 = await connectRefused(h, url, { ...versionOptions(4), clientId: "badname-4", username: "someone-else", password: d.jwt });
    expect(e4.code).toBe(4);
    const e5 = await connectRefused(h, url, { ...versionOptions(5), clientId: "badname-5", username: "someone-else", password: d.jwt });
    expect(e5.code).toBe(0x86);
  });

  it("no password at all is refused (4 / 0x86)", async () => {
    for (const v of [4, 5] as const) {
      const raw = await RawClient.open(h, mqttPort(hub), v);
      const connack = await raw.connect({ clientId: `nopw-${v}`, clean: true });
      expect(v === 5 ? connack.reasonCode : connack.returnCode).toBe(v === 5 ? 0x86 : 4);
      await raw.waitClosed(5_000);
    }
  });

  it("an unsupported protocol level (6) gets return code 1, then the connection closes", async () => {
    const raw = await RawClient.open(h, mqttPort(hub), 4);
    const got: Buffer[] = [];
    raw.socket.on("data", (b: Buffer) => got.push(b));
    raw.sendBytes(handConnect("MQTT", 6, "level-6"));
    const connack = await raw.next("connack");
    expect(connack.returnCode).toBe(1);
    await raw.waitClosed(5_000);
    // exactly the 3.1.1 CONNACK: type 2, remaining length 2, no session, return code 1
    expect(Buffer.concat(got)).toEqual(Buffer.from([0x20, 0x02, 0x00, 0x01]));
  });

  it("MQTT 3.1.1: an empty client id with clean session 0 gets return code 2", async () => {
    const d = mqttDevice(hub, "emptyid-311");
    const raw = await RawClient.open(h, mqttPort(hub), 4);
    raw.sendBytes(handConnect("MQTT", 4, "", { clean: false, username: d.name, password: d.jwt }));
    const connack = await raw.next("connack");
    expect(connack.returnCode).toBe(2);
    await raw.waitClosed(5_000);
  });

  it("MQTT 3.1.1: an empty client id with clean session 1 is accepted and works", async () => {
    const d = mqttDevice(hub, "emptyid-clean");
    const { client, connack } = await connectMqtt(h, url, { ...versionOptions(4), clientId: "", clean: true, username: d.name, password: d.jwt });
    expect(connack.returnCode).toBe(0);
    const inbox = new Inbox(client);
    await client.subscribeAsync("cmd/plant-a/emptyid-clean/#", { qos: 0 });
    await command("cmd/plant-a/emptyid-clean/go", "x");
    expect((await inbox.waitTopic("cmd/plant-a/emptyid-clean/go"))[0]?.payload).toBe("x");
  });

  it("MQTT 5: an empty client id gets an assigned client identifier that works as a session key", async () => {
    const d = mqttDevice(hub, "emptyid-5");
    const { client, connack } = await connectMqtt(h, url, { ...versionOptions(5), clientId: "", clean: true, username: d.name, password: d.jwt });
    expect(connack.reasonCode).toBe(0);
    const assigned = connack.properties?.assignedClientIdentifier;
    expect(assigned).toMatch(/^.+$/);
    // a second empty-id client gets another id
    const second = await connectMqtt(h, url, { ...versionOptions(5), clientId: "", clean: true, username: d.name, password: d.jwt });
    expect(second.connack.properties?.assignedClientIdentifier).toMatch(/^.+$/);
    expect(second.connack.properties?.assignedClientIdentifier).not.toBe(assigned);
    // both stay connected: different assigned ids do not take each other over
    expect(client.connected && second.client.connected).toBe(true);
    // the assigned id identifies the client: connecting with it takes the session over
    const kicked = new Promise<number | undefined>((resolve) => client.on("disconnect", (p) => resolve(p.reasonCode)));
    await connectMqtt(h, url, { ...versionOptions(5), clientId: assigned ?? "?", clean: true, username: d.name, password: d.jwt });
    expect(await kicked).toBe(0x8e);
  });

  it("MQTT 5 CONNACK announces the server's limits and features", async () => {
    const d = mqttDevice(hub, "limits-5");
    const { connack } = await connectMqtt(h, url, { ...versionOptions(5), clientId: "limits-5", username: d.name, password: d.jwt });
    const p = connack.properties ?? {};
    expect(p.receiveMaximum).toBeGreaterThan(0);
    expect(p.maximumPacketSize).toBeGreaterThan(0);
    expect(p.retainAvailable).not.toBe(false);
    expect(p.sharedSubscriptionAvailable).not.toBe(false);
    expect(p.subscriptionIdentifiersAvailable).not.toBe(false);
  });

  it("MQTT 3.1 (MQIsdp, level 3) connects and exchanges messages", async () => {
    const d = mqttDevice(hub, "v31-dev");
    const raw = await RawClient.open(h, mqttPort(hub), 3);
    const connack = await raw.connect({ clientId: "v31-raw", username: d.name, password: Buffer.from(d.jwt), clean: true });
    expect(connack.returnCode).toBe(0);
    raw.end();
    const { client, connack: ack } = await connectMqtt(h, url, { ...versionOptions(3), clientId: "v31-client", username: d.name, password: d.jwt });
    expect(ack.returnCode).toBe(0);
    const inbox = new Inbox(client);
    const granted = await client.subscribeAsync("cmd/plant-a/v31-dev/#", { qos: 1 });
    expect(granted[0]?.qos).toBe(1);
    await command("cmd/plant-a/v31-dev/reboot", "now");
    expect((await inbox.waitTopic("cmd/plant-a/v31-dev/reboot"))[0]?.payload).toBe("now");
    await client.publishAsync("telemetry/plant-a/v31-dev/temp", reading(1), { qos: 1 });
  });

  it("MQTT 3.1: bad credentials get return code 4 from MQTT.js's point of view too", async () => {
    const e = await connectRefused(h, url, { ...versionOptions(3), clientId: "v31-bad", username: "v31-dev", password: "x.y.z" });
    expect(e.code).toBe(4);
  });
});

describe("credentials", () => {
  it.each([4, 5] as const)("MQTT %s: a service credential connects with a proof of possession, not with its bare JWT", async (v) => {
    const svc = serviceUser(hub, `pop-${v}`);
    const { connack } = await connectMqtt(h, url, { ...versionOptions(v), ...svc.auth(`pop-${v}`) });
    expect(v === 5 ? connack.reasonCode : connack.returnCode).toBe(0);
    const e = await connectRefused(h, url, { ...versionOptions(v), clientId: `pop-bare-${v}`, username: svc.name, password: svc.jwt });
    expect(e.code).toBe(v === 5 ? 0x86 : 4);
  });

  it("a proof of possession is bound to its client id and cannot be replayed", async () => {
    const svc = serviceUser(hub, "pop-replay");
    const password = svc.password("pop-replay-a");
    // signed for another client id
    const other = await connectRefused(h, url, { ...versionOptions(4), clientId: "pop-replay-b", username: svc.name, password });
    expect(other.code).toBe(4);
    const { client } = await connectMqtt(h, url, { ...versionOptions(4), clientId: "pop-replay-a", username: svc.name, password });
    await client.endAsync();
    const replay = await connectRefused(h, url, { ...versionOptions(4), clientId: "pop-replay-a", username: svc.name, password });
    expect(replay.code).toBe(4);
  });

  it("a forged credential is refused: changed claims (4 / 0x86) or signed by an untrusted key", async () => {
    const d = mqttDevice(hub, "forge-me");
    // the signature no longer covers the claims: another device's name
    const renamed = tamper(d.jwt, (c) => {
      c["name"] = "forged";
    });
    for (const v of [4, 5] as const) {
      const e = await connectRefused(h, url, { ...versionOptions(v), clientId: `forged-${v}`, username: "forged", password: renamed });
      expect(e.code).toBe(v === 5 ? 0x86 : 4);
    }
    // correctly signed, but by a key that is no signing key of the account
    const rogue = createKeyPair("account");
    const selfSigned = resign(d.jwt, rogue.seed, () => undefined);
    for (const v of [4, 5] as const) {
      const e = await connectRefused(h, url, { ...versionOptions(v), clientId: `rogue-${v}`, username: "forge-me", password: selfSigned });
      // untrusted issuer: bad credentials (4 / 0x86) or not authorised (5 / 0x87)
      expect(v === 5 ? [0x86, 0x87] : [4, 5]).toContain(e.code);
    }
    // not a JWT at all
    const garbage = await connectRefused(h, url, { ...versionOptions(5), clientId: "garbage-5", username: "forge-me", password: "a.b.c" });
    expect(garbage.code).toBe(0x86);
    // the genuine one still works
    const { connack } = await connectMqtt(h, url, { ...versionOptions(5), clientId: "forge-genuine", username: d.name, password: d.jwt });
    expect(connack.reasonCode).toBe(0);
  });

  it("an expired credential (correctly signed by the role key) is refused", async () => {
    const d = mqttDevice(hub, "expired-dev");
    const iss = JSON.parse(Buffer.from(d.jwt.split(".")[1] ?? "", "base64url").toString("utf8")) as { iss: string };
    const signer = hub.keystore.keyPair(iss.iss);
    const now = Math.floor(Date.now() / 1000);
    const expired = resign(d.jwt, signer.seed, (c) => {
      c["iat"] = now - 3_600;
      c["exp"] = now - 60;
    });
    const e4 = await connectRefused(h, url, { ...versionOptions(4), clientId: "expired-4", username: d.name, password: expired });
    expect(e4.code).toBe(4);
    const e5 = await connectRefused(h, url, { ...versionOptions(5), clientId: "expired-5", username: d.name, password: expired });
    expect(e5.code).toBe(0x86);
    // the same claims re-signed without the past expiry are accepted: it is the expiry that was refused
    const fresh = resign(d.jwt, signer.seed, () => undefined);
    const { connack } = await connectMqtt(h, url, { ...versionOptions(5), clientId: "expired-fresh", username: d.name, password: fresh });
    expect(connack.reasonCode).toBe(0);
  });

  it("a connected client is disconnected when its credential expires (MQTT 5: 0x87)", async () => {
    const r = issueUser(hub.keystore, { account: "fleet", role: "mqtt", name: "expiring", site: "plant-a", expiresInSec: 2 });
    const { client } = await connectMqtt(h, url, { ...versionOptions(5), clientId: "expiring", username: "expiring", password: r.jwt });
    const reason = await new Promise<number | undefined>((resolve) => client.on("disconnect", (p) => resolve(p.reasonCode)));
    expect(reason).toBe(0x87);
    expect(Date.now()).toBeGreaterThanOrEqual(((r.record.expiresAt ?? 0) - 1) * 1000);
  });
});

describe("MQTT 5 enhanced authentication (FABRIC-NKEY)", () => {
  const FABRIC = "FABRIC-NKEY";

  it("CONNECT with the JWT, AUTH with a nonce, AUTH with the signature, CONNACK success", async () => {
    const d = mqttDevice(hub, "enh-ok");
    const kp = keyPairFromSeed(d.seed);
    const challenges: Buffer[] = [];
    const { client, connack } = await connectMqtt(
      h,
      url,
      { ...versionOptions(5), clientId: "enh-ok", properties: { authenticationMethod: FABRIC, authenticationData: Buffer.from(d.jwt) } },
      (c) => {
        c.handleAuth = (packet: IAuthPacket, cb) => {
          const nonce = packet.properties?.authenticationData ?? Buffer.alloc(0);
          challenges.push(nonce);
          cb(undefined, { cmd: "auth", reasonCode: 0x18, properties: { authenticationMethod: FABRIC, authenticationData: Buffer.from(kp.sign(nonce)) } });
        };
      },
    );
    expect(connack.reasonCode).toBe(0);
    expect(connack.properties?.authenticationMethod).toBe(FABRIC);
    expect(challenges).toHaveLength(1);
    expect(challenges[0]?.length).toBeGreaterThanOrEqual(16);
    // the connection has the device's permissions: its own telemetry is stored, another device's refused
    await client.publishAsync("telemetry/plant-a/enh-ok/temp", reading(3), { qos: 1 });
    await expect(client.publishAsync("telemetry/plant-a/other/temp", reading(3), { qos: 1 })).rejects.toThrow(/135|not authori[sz]ed/i);
  });

  it("the server's AUTH carries the method, reason 0x18 and a fresh nonce on every connection", async () => {
    const d = mqttDevice(hub, "enh-raw");
    const kp = keyPairFromSeed(d.seed);
    const nonces: string[] = [];
    for (let i = 0; i < 2; i++) {
      const raw = await RawClient.open(h, mqttPort(hub), 5);
      raw.send({ cmd: "connect", protocolVersion: 5, protocolId: "MQTT", clientId: `enh-raw-${i}`, clean: true, keepalive: 0, properties: { authenticationMethod: FABRIC, authenticationData: Buffer.from(d.jwt) } });
      const auth = await raw.next("auth");
      expect(auth.reasonCode).toBe(0x18);
      expect(auth.properties?.authenticationMethod).toBe(FABRIC);
      const nonce = auth.properties?.authenticationData ?? Buffer.alloc(0);
      nonces.push(nonce.toString("hex"));
      raw.send({ cmd: "auth", reasonCode: 0x18, properties: { authenticationMethod: FABRIC, authenticationData: Buffer.from(kp.sign(nonce)) } });
      const connack = await raw.next("connack");
      expect(connack.reasonCode).toBe(0);
      raw.end();
    }
    expect(nonces[0]).not.toBe(nonces[1]);
  });

  it("a signature by another key is refused (not authorised), and the connection closes", async () => {
    const d = mqttDevice(hub, "enh-wrong");
    const other = createKeyPair("user");
    const raw = await RawClient.open(h, mqttPort(hub), 5);
    raw.send({ cmd: "connect", protocolVersion: 5, protocolId: "MQTT", clientId: "enh-wrong", clean: true, keepalive: 0, properties: { authenticationMethod: FABRIC, authenticationData: Buffer.from(d.jwt) } });
    const auth = await raw.next("auth");
    raw.send({ cmd: "auth", reasonCode: 0x18, properties: { authenticationMethod: FABRIC, authenticationData: Buffer.from(other.sign(auth.properties?.authenticationData ?? Buffer.alloc(0))) } });
    const connack = await raw.next("connack");
    expect([0x86, 0x87]).toContain(connack.reasonCode);
    await raw.waitClosed(5_000);
  });

  it("a signature over another nonce (replayed from an earlier connection) is refused", async () => {
    const d = mqttDevice(hub, "enh-replay");
    const kp = keyPairFromSeed(d.seed);
    const first = await RawClient.open(h, mqttPort(hub), 5);
    first.send({ cmd: "connect", protocolVersion: 5, protocolId: "MQTT", clientId: "enh-replay-1", clean: true, keepalive: 0, properties: { authenticationMethod: FABRIC, authenticationData: Buffer.from(d.jwt) } });
    const oldNonce = (await first.next("auth")).properties?.authenticationData ?? Buffer.alloc(0);
    first.end();
    const second = await RawClient.open(h, mqttPort(hub), 5);
    second.send({ cmd: "connect", protocolVersion: 5, protocolId: "MQTT", clientId: "enh-replay-2", clean: true, keepalive: 0, properties: { authenticationMethod: FABRIC, authenticationData: Buffer.from(d.jwt) } });
    await second.next("auth");
    second.send({ cmd: "auth", reasonCode: 0x18, properties: { authenticationMethod: FABRIC, authenticationData: Buffer.from(kp.sign(oldNonce)) } });
    const connack = await second.next("connack");
    expect([0x86, 0x87]).toContain(connack.reasonCode);
    await second.waitClosed(5_000);
  });

  it("an unknown authentication method gets 0x8C; a forged JWT as authentication data gets 0x86", async () => {
    const d = mqttDevice(hub, "enh-method");
    const raw = await RawClient.open(h, mqttPort(hub), 5);
    raw.send({ cmd: "connect", protocolVersion: 5, protocolId: "MQTT", clientId: "enh-method", clean: true, keepalive: 0, properties: { authenticationMethod: "SCRAM-SHA-1", authenticationData: Buffer.from("x") } });
    expect((await raw.next("connack")).reasonCode).toBe(0x8c);
    await raw.waitClosed(5_000);
    const forged = tamper(d.jwt, (c) => {
      c["name"] = "someone";
    });
    const raw2 = await RawClient.open(h, mqttPort(hub), 5);
    raw2.send({ cmd: "connect", protocolVersion: 5, protocolId: "MQTT", clientId: "enh-forged", clean: true, keepalive: 0, properties: { authenticationMethod: FABRIC, authenticationData: Buffer.from(forged) } });
    const reply = await raw2.next("connack");
    expect(reply.reasonCode).toBe(0x86);
    expect(raw2.received.some((p) => p.cmd === "auth")).toBe(false);
    await raw2.waitClosed(5_000);
  });
});

describe("session takeover", () => {
  it.each([3, 4, 5] as const)("MQTT %s: a second connection with the same client id closes the first", async (v: Version) => {
    const d = mqttDevice(hub, `take-${v}`);
    const cid = `takeover-${v}`;
    const first = await connectMqtt(h, url, { ...versionOptions(v), clientId: cid, username: d.name, password: d.jwt });
    const firstClosed = closedPromise(first.client);
    const reasons: (number | undefined)[] = [];
    first.client.on("disconnect", (p) => reasons.push(p.reasonCode));
    const second = await connectMqtt(h, url, { ...versionOptions(v), clientId: cid, username: d.name, password: d.jwt });
    await firstClosed;
    if (v === 5) expect(reasons).toEqual([0x8e]);
    else expect(reasons).toEqual([]);
    // the second one is served
    const inbox = new Inbox(second.client);
    await second.client.subscribeAsync(`cmd/plant-a/take-${v}/#`, { qos: 1 });
    await command(`cmd/plant-a/take-${v}/x`, VERSION_NAME[v]);
    expect((await inbox.waitTopic(`cmd/plant-a/take-${v}/x`))[0]?.payload).toBe(VERSION_NAME[v]);
    expect(second.client.connected).toBe(true);
  });

  it("a takeover across protocol versions (3.1.1 by 5.0) closes the first too", async () => {
    const d = mqttDevice(hub, "take-mixed");
    const first = await connectMqtt(h, url, { ...versionOptions(4), clientId: "take-mixed", username: d.name, password: d.jwt });
    const firstClosed = closedPromise(first.client);
    const second = await connectMqtt(h, url, { ...versionOptions(5), clientId: "take-mixed", username: d.name, password: d.jwt });
    await firstClosed;
    expect(second.client.connected).toBe(true);
  });
});

describe("client identifiers NATS cannot carry", () => {
  const ids = ["dev.with.dots", "with space", "star*id", "gt>id", "all. *>of them", "ünï/çødé"];

  it("connect, subscribe and receive, each its own session", async () => {
    const d = mqttDevice(hub, "odd-ids");
    const clients = [];
    for (const id of ids) {
      const { client, connack } = await connectMqtt(h, url, { ...versionOptions(5), clientId: id, username: d.name, password: d.jwt, clean: true });
      expect(connack.reasonCode, id).toBe(0);
      const inbox = new Inbox(client);
      await client.subscribeAsync("cmd/plant-a/odd-ids/#", { qos: 0 });
      clients.push({ id, client, inbox });
    }
    await command("cmd/plant-a/odd-ids/ping", "hello");
    for (const c of clients) {
      expect((await c.inbox.waitTopic("cmd/plant-a/odd-ids/ping"))[0]?.payload, c.id).toBe("hello");
      // distinct ids: no one took another over
      expect(c.client.connected, c.id).toBe(true);
    }
  });

  it("keep persistent sessions under such ids", async () => {
    const d = mqttDevice(hub, "odd-persist");
    for (const id of ["p.x y", "p*>"]) {
      const first = await connectMqtt(h, url, { ...versionOptions(4), clientId: id, username: d.name, password: d.jwt, clean: false });
      expect(first.connack.sessionPresent, id).toBe(false);
      await first.client.subscribeAsync("cmd/plant-a/odd-persist/#", { qos: 1 });
      await first.client.endAsync();
      const again = await connectMqtt(h, url, { ...versionOptions(4), clientId: id, username: d.name, password: d.jwt, clean: false });
      expect(again.connack.sessionPresent, id).toBe(true);
      const inbox = new Inbox(again.client);
      await command("cmd/plant-a/odd-persist/go", id);
      expect((await inbox.waitTopic("cmd/plant-a/odd-persist/go"))[0]?.payload).toBe(id);
      await again.client.endAsync();
      // a clean session discards it
      const clean = await connectMqtt(h, url, { ...versionOptions(4), clientId: id, username: d.name, password: d.jwt, clean: true });
      expect(clean.connack.sessionPresent, id).toBe(false);
      await clean.client.endAsync();
    }
  });
});

describe("keepalive", () => {
  it.each([4, 5] as const)("MQTT %s: a client silent for 1.5 x its keepalive of 1 s is disconnected", async (v) => {
    const d = mqttDevice(hub, `ka-${v}`);
    const raw = await RawClient.open(h, mqttPort(hub), v);
    const connack = await raw.connect({ clientId: `keepalive-${v}`, username: d.name, password: Buffer.from(d.jwt), clean: true, keepalive: 1 });
    expect(v === 5 ? connack.reasonCode : connack.returnCode).toBe(0);
    const t0 = Date.now();
    await raw.waitClosed(4_000);
    const elapsed = (raw.closedAt ?? 0) - t0;
    expect(elapsed).toBeGreaterThanOrEqual(1_000);
    expect(elapsed).toBeLessThanOrEqual(2_600);
    if (v === 5) {
      const disconnect = raw.received.find((p) => p.cmd === "disconnect");
      expect(disconnect?.reasonCode).toBe(0x8d);
    }
  });

  it("a client that sends PINGREQ within its keepalive stays connected and gets PINGRESP", async () => {
    const d = mqttDevice(hub, "ka-ping");
    const raw = await RawClient.open(h, mqttPort(hub), 4);
    await raw.connect({ clientId: "keepalive-ping", username: d.name, password: Buffer.from(d.jwt), clean: true, keepalive: 1 });
    const t0 = Date.now();
    // 3 s, well past the 1.5 s a silent client gets; one PINGREQ every 400 ms
    while (Date.now() - t0 < 3_000) {
      raw.send({ cmd: "pingreq" });
      await raw.next("pingresp", 1_000);
      await new Promise((r) => setTimeout(r, 400)); // the client's own keepalive period, not a wait for the server
    }
    expect(raw.closed).toBe(false);
  });
});
