import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jetstream } from "@nats-io/jetstream";
import {
  createKeyPair,
  deviceInboxPrefix,
  formatCreds,
  issueBootstrap,
  provisionDevice,
  pushAccounts,
  renewCredential,
  revokeUsers,
  validateUserJwt,
  peekJwt,
  ProvisionError,
  requestCredential,
  requestNonce,
  issueUser,
  keyPairFromSeed,
  parseCreds,
} from "../../identity/index.js";
import { subjects } from "../../fabric/core/index.js";
import { connectAs, Harness, startTestHub, type TestHub } from "../harness/index.js";

const h = new Harness();
let hub: TestHub;
afterAll(() => h.dispose());
beforeAll(async () => {
  hub = await startTestHub(h);
});

async function refusedWith(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    return err instanceof ProvisionError ? err.code : String(err);
  }
  return "accepted";
}

describe("device provisioning and renewal through the identity service", () => {
  it("provisions a device that keeps its own key, once per token, and renews it", async () => {
    const boot = issueBootstrap(hub.keystore, "fleet", "plant-a", 2, 3600);
    const key = createKeyPair("user");
    const { jwt } = await provisionDevice({ servers: hub.urls, bootstrapCreds: boot.creds, token: boot.tokens[0] ?? "", name: "sensor-7", keyPair: key });
    const v = validateUserJwt(jwt, hub.keystore.trustAnchors());
    expect(v.publicKey).toBe(key.publicKey);
    expect(v.site).toBe("plant-a");
    expect(v.role).toBe("device");

    // the device connects with its own seed and the issued JWT, and publishes its telemetry
    const creds = formatCreds(jwt, key.seed);
    const nc = await connectAs(hub.urls, creds, { inboxPrefix: deviceInboxPrefix("plant-a", "sensor-7") });
    const ack = await jetstream(nc).publish("telemetry.plant-a.sensor-7.temp", JSON.stringify({ value: 1, ts: Date.now() }));
    expect(ack.stream).toBe("TELEMETRY");
    await nc.close();

    // the same token again: refused, even with a fresh key
    expect(await refusedWith(provisionDevice({ servers: hub.urls, bootstrapCreds: boot.creds, token: boot.tokens[0] ?? "", name: "sensor-8", keyPair: createKeyPair("user") }))).toBe("FABRIC_ERR_TOKEN_USED");
    // an unknown token: refused
    expect(await refusedWith(provisionDevice({ servers: hub.urls, bootstrapCreds: boot.creds, token: "nope", name: "sensor-8", keyPair: createKeyPair("user") }))).toBe("FABRIC_ERR_TOKEN_INVALID");
    // a name another key holds at the site: refused, and the token is not spent
    expect(await refusedWith(provisionDevice({ servers: hub.urls, bootstrapCreds: boot.creds, token: boot.tokens[1] ?? "", name: "sensor-7", keyPair: createKeyPair("user") }))).toBe("FABRIC_ERR_PROVISION");

    // renewal: proves possession of the key, gets a newer JWT for the same key
    const renewed = await renewCredential({ servers: hub.urls, creds, inboxPrefix: deviceInboxPrefix("plant-a", "sensor-7") });
    expect(peekJwt(renewed.jwt)["sub"]).toBe(key.publicKey);
    expect(Number(peekJwt(renewed.jwt)["iat"])).toBeGreaterThanOrEqual(Number(peekJwt(jwt)["iat"]));
    expect(validateUserJwt(renewed.jwt, hub.keystore.trustAnchors()).name).toBe("sensor-7");
  });

  it("refuses a signature made by another key than the one claimed", async () => {
    const boot = issueBootstrap(hub.keystore, "fleet", "plant-a", 1, 3600);
    const claimed = createKeyPair("user");
    const other = createKeyPair("user");
    const liar = { ...other, publicKey: claimed.publicKey };
    expect(await refusedWith(provisionDevice({ servers: hub.urls, bootstrapCreds: boot.creds, token: boot.tokens[0] ?? "", name: "liar", keyPair: liar }))).toBe("FABRIC_ERR_PROOF_INVALID");
    // the token was not spent by the failed attempt
    const ok = await provisionDevice({ servers: hub.urls, bootstrapCreds: boot.creds, token: boot.tokens[0] ?? "", name: "honest", keyPair: claimed });
    expect(peekJwt(ok.jwt)["sub"]).toBe(claimed.publicKey);
  });

  it("refuses a revoked key: no new credential, no renewal", async () => {
    const boot = issueBootstrap(hub.keystore, "fleet", "plant-b", 2, 3600);
    const key = createKeyPair("user");
    const { jwt } = await provisionDevice({ servers: hub.urls, bootstrapCreds: boot.creds, token: boot.tokens[0] ?? "", name: "gone", keyPair: key });
    await hub.keystore.withLock(() => revokeUsers(hub.keystore, "fleet", key.publicKey));
    await pushAccounts(hub.keystore, { servers: hub.urls, accounts: ["fleet"] });
    expect(await refusedWith(provisionDevice({ servers: hub.urls, bootstrapCreds: boot.creds, token: boot.tokens[1] ?? "", name: "gone", keyPair: key }))).toBe("FABRIC_ERR_CREDENTIAL_REVOKED");
    // renewal needs a connection with the revoked credential, which the server refuses
    expect(await refusedWith(renewCredential({ servers: hub.urls, creds: formatCreds(jwt, key.seed), inboxPrefix: deviceInboxPrefix("plant-b", "gone") }))).toMatch(/authorization/i);
  });

  it("spends a token only on a credential issued: bad input, a device provisioned already and a lost reply's retry leave it or reuse it", async () => {
    const boot = issueBootstrap(hub.keystore, "fleet", "plant-e", 2, 3600);
    const [t1 = "", t2 = ""] = boot.tokens;
    const nc = await connectAs(hub.urls, boot.creds, { inboxPrefix: `_INBOX.boot.${String(peekJwt(boot.creds.split("\n")[1] ?? "")["name"])}` });
    h.defer(() => nc.close());
    const key = createKeyPair("user");
    const ask = async (token: string, name: string, kp = key): Promise<string> => {
      const nonce = await requestNonce(nc, "provision");
      const signature = Buffer.from(kp.sign(Buffer.from(nonce, "utf8"))).toString("base64url");
      return requestCredential(nc, subjects.identity.provision, { token, name, publicKey: kp.publicKey, nonce, signature }).then(
        (r) => r.jwt,
        (err: unknown) => (err instanceof ProvisionError ? err.code : String(err)),
      );
    };
    // an invalid name (and an over-long one): refused before the token is looked at
    expect(await ask(t1, "Bad Name")).toBe("FABRIC_ERR_PROVISION");
    expect(await ask(t1, "x".repeat(5_000))).toBe("FABRIC_ERR_PROVISION");
    // the token still works
    const jwt = await ask(t1, "valve-1");
    expect(peekJwt(jwt)["sub"]).toBe(key.publicKey);
    // the reply was lost: the same token, name and key get a credential again, nothing more spent
    expect(peekJwt(await ask(t1, "valve-1"))["sub"]).toBe(key.publicKey);
    // ...but the spent token serves no other device
    expect(await ask(t1, "valve-2", createKeyPair("user"))).toBe("FABRIC_ERR_TOKEN_USED");
    // a second token for the device already provisioned with this key: refused, and not spent
    expect(await ask(t2, "valve-1")).toBe("FABRIC_ERR_ALREADY_PROVISIONED");
    expect(peekJwt(await ask(t2, "valve-2", createKeyPair("user")))["name"]).toBe("valve-2");
  });

  it("accepts a nonce once, for the operation it was issued for", async () => {
    const boot = issueBootstrap(hub.keystore, "fleet", "plant-f", 3, 3600);
    const nc = await connectAs(hub.urls, boot.creds, { inboxPrefix: `_INBOX.boot.${String(peekJwt(boot.creds.split("\n")[1] ?? "")["name"])}` });
    h.defer(() => nc.close());
    const kp = createKeyPair("user");
    const sign = (nonce: string): string => Buffer.from(kp.sign(Buffer.from(nonce, "utf8"))).toString("base64url");
    const code = (p: Promise<unknown>): Promise<string> => p.then(() => "accepted", (err: unknown) => (err instanceof ProvisionError ? err.code : String(err)));
    const nonce = await requestNonce(nc, "provision");
    const req = { token: boot.tokens[0] ?? "", name: "gauge-1", publicKey: kp.publicKey, nonce, signature: sign(nonce) };
    expect(await code(requestCredential(nc, subjects.identity.provision, req))).toBe("accepted");
    // the very same request again (the nonce with it): refused
    expect(await code(requestCredential(nc, subjects.identity.provision, req))).toBe("FABRIC_ERR_NONCE_USED");
    expect(await code(requestCredential(nc, subjects.identity.provision, { ...req, token: boot.tokens[1] ?? "" }))).toBe("FABRIC_ERR_NONCE_USED");
    // a nonce asked for renewal does not provision
    const renewNonce = await requestNonce(nc, "renew");
    expect(await code(requestCredential(nc, subjects.identity.provision, { ...req, token: boot.tokens[2] ?? "", nonce: renewNonce, signature: sign(renewNonce) }))).toBe("FABRIC_ERR_NONCE_INVALID");
    // a nonce request without an operation is refused with the field named
    expect(await code(requestNonce(nc, "nothing" as "renew"))).toBe("FABRIC_ERR_PROVISION");

    // renewal: the same signed request twice succeeds once; a provisioning nonce does not renew
    const prov = await provisionDevice({ servers: hub.urls, bootstrapCreds: boot.creds, token: boot.tokens[2] ?? "", name: "gauge-2", keyPair: kp });
    const dev = await connectAs(hub.urls, formatCreds(prov.jwt, kp.seed), { inboxPrefix: deviceInboxPrefix("plant-f", "gauge-2") });
    h.defer(() => dev.close());
    const rn = await requestNonce(dev, "renew");
    const renewal = { jwt: prov.jwt, nonce: rn, signature: sign(rn) };
    expect(await code(requestCredential(dev, subjects.identity.renew, renewal))).toBe("accepted");
    expect(await code(requestCredential(dev, subjects.identity.renew, renewal))).toBe("FABRIC_ERR_NONCE_USED");
    const pn = await requestNonce(dev, "provision");
    expect(await code(requestCredential(dev, subjects.identity.renew, { jwt: prov.jwt, nonce: pn, signature: sign(pn) }))).toBe("FABRIC_ERR_NONCE_INVALID");
  });

  it("a role that may not renew is refused with PERMISSION_DENIED, after its proof", async () => {
    const svc = issueUser(hub.keystore, { account: "fleet", role: "service", name: "svc-renew" });
    const nc = await connectAs(hub.urls, svc.creds ?? "");
    h.defer(() => nc.close());
    const kp = keyPairFromSeed(parseCreds(svc.creds ?? "").seed);
    const code = (p: Promise<unknown>): Promise<string> => p.then(() => "accepted", (err: unknown) => (err instanceof ProvisionError ? err.code : String(err)));
    const n1 = await requestNonce(nc, "renew");
    expect(await code(requestCredential(nc, subjects.identity.renew, { jwt: svc.jwt, nonce: n1, signature: Buffer.from(kp.sign(Buffer.from(n1, "utf8"))).toString("base64url") }))).toBe("FABRIC_ERR_PERMISSION_DENIED");
    // without the proof it is the proof that is wrong
    const n2 = await requestNonce(nc, "renew");
    expect(await code(requestCredential(nc, subjects.identity.renew, { jwt: svc.jwt, nonce: n2, signature: Buffer.alloc(64, 1).toString("base64url") }))).toBe("FABRIC_ERR_PROOF_INVALID");
  });

  it("the bootstrap credential reaches nothing but provisioning", async () => {
    const boot = issueBootstrap(hub.keystore, "fleet", "plant-c", 1, 3600);
    const bootName = String(peekJwt(boot.creds.split("\n")[1] ?? "")["name"]);
    const nc = await connectAs(hub.urls, boot.creds, { inboxPrefix: `_INBOX.boot.${bootName}` });
    const errors: string[] = [];
    void (async () => {
      for await (const s of nc.status()) if (s.type === "error") errors.push(String(s.error));
    })();
    nc.publish("telemetry.plant-c.x.temp", "1");
    const sub = nc.subscribe("telemetry.>");
    const closed = await sub.closed.then((r) => (r instanceof Error ? String(r) : ""), (e: unknown) => String(e));
    expect(closed).toMatch(/permissions violation/i);
    await nc.flush();
    await nc.close();
    expect(errors.some((e) => /permissions violation for publish/i.test(e))).toBe(true);
  });
});
