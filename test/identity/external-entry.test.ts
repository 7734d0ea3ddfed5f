/**
 * External identity (issue 14) through every entry: gRPC CredentialService.Exchange, the HTTP token exchange
 * (RFC 8693), and the MQTT ingress taking an identity provider's token as the password (the connection ends
 * when the token expires, or when the provider's subject is revoked).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { status, type ServiceError } from "@grpc/grpc-js";
import { createKeyPair, pushAccounts, putProvider, revokeExternalSubject, validateUserJwt } from "../../identity/index.js";
import { CredentialServiceClient, NonceOperation } from "../../proto/gen/fabric/v1/credential.js";
import { grpcClient, Harness, startTestHub, startTestIdp, type TestHub, type TestIdp } from "../harness/index.js";
import { connectMqtt, mqttUrl, versionOptions } from "../ingress/mqtt-helpers.js";

const h = new Harness();
let hub: TestHub;
let idp: TestIdp;

afterAll(() => h.dispose());
beforeAll(async () => {
  hub = await startTestHub(h, { grpc: true, mqtt: true, exchange: true, windows: false, sinks: false });
  idp = await startTestIdp(h);
  await hub.keystore.withLock(() =>
    putProvider(hub.keystore, {
      name: "corp",
      issuer: idp.issuer,
      jwksUri: idp.jwksUri,
      audiences: ["fabric"],
      clockToleranceSec: 0,
      rules: [
        { when: { groups: "fleet-services" }, role: "service", name: "{preferred_username}" },
        { when: { typ: "device" }, role: "mqtt", site: "{acct}", name: "{device_id}" },
      ],
    }),
  );
}, 60_000);

const sign = (kp: ReturnType<typeof createKeyPair>, nonce: string): string => Buffer.from(kp.sign(Buffer.from(nonce, "utf8"))).toString("base64url");

describe("token exchange over gRPC", () => {
  it("exchanges a token for a credential; refusals carry their status and fabric code", async () => {
    const c = grpcClient(CredentialServiceClient, hub.grpc ?? 0);
    h.defer(() => c.close());
    const call = <R>(f: (cb: (e: ServiceError | null, r: R) => void) => void): Promise<R> => new Promise((resolve, reject) => f((e, r) => (e === null ? resolve(r) : reject(e))));
    const exchange = async (token: string): Promise<{ jwt: string; expiresAt: number }> => {
      const kp = createKeyPair("user");
      const n = await call<{ nonce: string }>((cb) => c.getNonce({ operation: NonceOperation.NONCE_OPERATION_EXCHANGE }, cb));
      return call((cb) => c.exchange({ token, publicKey: kp.publicKey, nonce: n.nonce, signature: sign(kp, n.nonce) }, cb));
    };
    const ok = await exchange(await idp.token({ sub: "g-1", aud: "fabric", groups: ["fleet-services"], preferred_username: "grpc-svc" }));
    expect(validateUserJwt(ok.jwt, hub.keystore.trustAnchors())).toMatchObject({ role: "service", name: "grpc-svc" });
    expect(ok.expiresAt).toBeGreaterThan(Date.now() / 1000);
    const refused = async (token: string): Promise<[status, string | undefined]> => {
      try {
        await exchange(token);
      } catch (err) {
        const e = err as ServiceError;
        return [e.code, e.metadata.get("fabric-error-code")[0]?.toString()];
      }
      throw new Error("accepted");
    };
    expect(await refused(await idp.token({ sub: "g-2", aud: "elsewhere", groups: ["fleet-services"], preferred_username: "x" }))).toEqual([status.UNAUTHENTICATED, "FABRIC_ERR_EXTERNAL_TOKEN_INVALID"]);
    expect(await refused(await idp.token({ sub: "g-3", aud: "fabric", groups: ["nobody"] }))).toEqual([status.PERMISSION_DENIED, "FABRIC_ERR_EXTERNAL_NO_ROLE"]);
  });
});

describe("token exchange over HTTP (RFC 8693)", () => {
  it("POST /token with a nonce signed by the caller's key gives a NATS user JWT; bad requests get OAuth errors", async () => {
    const base = hub.exchange?.url ?? "";
    const kp = createKeyPair("user");
    const { nonce } = (await (await fetch(`${base}/nonce`)).json()) as { nonce: string };
    const form = new URLSearchParams({
      grant_type: "urn:ietf:params:oauth:grant-type:token-exchange",
      subject_token: await idp.token({ sub: "w-1", aud: "fabric", groups: ["fleet-services"], preferred_username: "web-svc" }),
      subject_token_type: "urn:ietf:params:oauth:token-type:jwt",
      public_key: kp.publicKey,
      nonce,
      signature: sign(kp, nonce),
    });
    const res = await fetch(`${base}/token`, { method: "POST", body: form });
    expect(res.status).toBe(200);
    expect(res.headers.get("cache-control")).toBe("no-store");
    const body = (await res.json()) as { access_token: string; issued_token_type: string; token_type: string; expires_in: number };
    expect(body.issued_token_type).toBe("urn:fabric:params:oauth:token-type:nats-user-jwt");
    expect(body.token_type).toBe("N_A");
    expect(body.expires_in).toBeGreaterThan(0);
    expect(validateUserJwt(body.access_token, hub.keystore.trustAnchors())).toMatchObject({ name: "web-svc", publicKey: kp.publicKey });
    // the nonce is spent
    const again = await fetch(`${base}/token`, { method: "POST", body: form });
    expect([again.status, ((await again.json()) as { error: string; fabric_error_code: string }).fabric_error_code]).toEqual([400, "FABRIC_ERR_NONCE_USED"]);
    // a wrong grant type
    const bad = await fetch(`${base}/token`, { method: "POST", body: new URLSearchParams({ ...Object.fromEntries(form), grant_type: "password" }) });
    expect(bad.status).toBe(400);
    expect((await bad.json()) as { error: string; error_description: string }).toMatchObject({ error: "invalid_request", error_description: expect.stringMatching(/grant_type/) as unknown });
    // an expired token
    const n2 = ((await (await fetch(`${base}/nonce`)).json()) as { nonce: string }).nonce;
    const now = Math.floor(Date.now() / 1000);
    const expired = await fetch(`${base}/token`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ ...Object.fromEntries(form), subject_token: await idp.token({ sub: "w-2", aud: "fabric", iat: now - 100, exp: now - 10 }), nonce: n2, signature: sign(kp, n2) }),
    });
    expect([expired.status, ((await expired.json()) as { error: string }).error]).toEqual([400, "invalid_grant"]);
  });
});

describe("MQTT with an identity provider's token as the password", () => {
  it("connects as the mapped user; the connection ends when the token expires", async () => {
    const exp = Math.floor(Date.now() / 1000) + 4;
    const token = await idp.token({ sub: "m-1", aud: "fabric", typ: "device", acct: "acct-7", device_id: "meter-3", exp });
    const { client, connack } = await connectMqtt(h, mqttUrl(hub), { ...versionOptions(5), clientId: "meter-3", username: "anything", password: token });
    expect(connack.reasonCode ?? 0).toBe(0);
    const closedAt = await new Promise<number>((resolve) => client.once("close", () => resolve(Date.now())));
    // not before the token's exp (whole seconds), and soon after it
    expect(closedAt).toBeGreaterThanOrEqual((exp - 1) * 1000);
    expect(closedAt).toBeLessThan(exp * 1000 + 2_000);
    expect(hub.keystore.users("fleet").some((u) => u.external?.subject === "m-1" && u.site === "acct-7" && u.name === "meter-3")).toBe(true);
  }, 20_000);

  it("refuses a forged token, and a revoked subject's connection is ended", async () => {
    const forged = `${(await idp.token({ sub: "m-2", aud: "fabric", typ: "device", acct: "a", device_id: "d" })).slice(0, -4)}AAAA`;
    await expect(connectMqtt(h, mqttUrl(hub), { ...versionOptions(5), clientId: "forged", username: "forged", password: forged })).rejects.toThrow(/Bad User Name or Password|not authorized|134/i);
    const token = await idp.token({ sub: "m-3", aud: "fabric", typ: "device", acct: "acct-8", device_id: "meter-9" });
    const { client } = await connectMqtt(h, mqttUrl(hub), { ...versionOptions(4), clientId: "meter-9", username: "meter-9", password: token });
    const closed = new Promise<void>((resolve) => client.once("close", () => resolve()));
    const rev = await hub.keystore.withLock(() => revokeExternalSubject(hub.keystore, "corp", "m-3"));
    await pushAccounts(hub.keystore, { servers: hub.urls, accounts: [rev.account] });
    await closed;
    await expect(connectMqtt(h, mqttUrl(hub), { ...versionOptions(4), clientId: "meter-9b", username: "meter-9", password: token })).rejects.toThrow(/Not authorized|Bad User Name|5|4/i);
  }, 20_000);
});
