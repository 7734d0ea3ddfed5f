/**
 * External identity (issue 14): an identity provider's token (a local IdP with real keys: jose, a JWKS endpoint)
 * exchanged for a fabric credential over NATS, every refusal with its code, key rotation, revocation of the
 * provider's subject.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NatsConnection } from "@nats-io/transport-node";
import { pollUntil } from "../../fabric/core/index.js";
import { createKeyPair, exchangeToken, formatCreds, issueBootstrap, pushAccounts, putProvider, revokeExternalSubject, validateUserJwt, type ExternalProviderInput } from "../../identity/index.js";
import { bootstrapInboxPrefix } from "../../identity/roles.js";
import { connectAs, Harness, newIdpKey, startTestHub, startTestIdp, waitClosed, type TestHub, type TestIdp } from "../harness/index.js";

const h = new Harness();
let hub: TestHub;
let idp: TestIdp;
let nc: NatsConnection;

afterAll(() => h.dispose());
beforeAll(async () => {
  hub = await startTestHub(h, { windows: false, sinks: false });
  idp = await startTestIdp(h);
  const provider: ExternalProviderInput = {
    name: "corp",
    issuer: idp.issuer,
    jwksUri: idp.jwksUri,
    audiences: ["fabric"],
    algorithms: ["RS256", "ES256"],
    maxTtlSec: 3_600,
    clockToleranceSec: 0,
    rules: [
      { when: { groups: "fleet-services" }, role: "service", name: "{preferred_username}" },
      // the seeds' topic layout …/eft/{account key}/{device id}: the account key is the site, the device id the name
      { when: { typ: "device" }, role: "device", site: "{acct}", name: "{device_id}" },
    ],
  };
  await hub.keystore.withLock(() => putProvider(hub.keystore, provider));
  // a factory (bootstrap) credential reaches the identity service, nothing else
  const boot = issueBootstrap(hub.keystore, "fleet", "plant-a", 1, 600);
  const bootName = validateUserJwt(boot.creds.split("\n")[1] ?? "", hub.keystore.trustAnchors()).name;
  nc = await connectAs(hub.urls, boot.creds, { inboxPrefix: bootstrapInboxPrefix(bootName) });
  h.defer(() => nc.close());
}, 60_000);

const refusal = async (p: Promise<unknown>): Promise<string> => {
  try {
    await p;
  } catch (err) {
    return `${(err as { code?: string }).code ?? "?"}: ${(err as Error).message}`;
  }
  throw new Error("exchange was accepted but should have been refused");
};

describe("token exchange over NATS", () => {
  it("a service's token becomes a service credential on its own key, expiring with the token", async () => {
    const token = await idp.token({ sub: "u-1", aud: "fabric", groups: ["staff", "fleet-services"], preferred_username: "Billing-Svc" }, { expiresInSec: 900 });
    const kp = createKeyPair("user");
    const r = await exchangeToken(nc, token, kp);
    const user = validateUserJwt(r.jwt, hub.keystore.trustAnchors());
    expect(user).toMatchObject({ role: "service", name: "billing-svc", publicKey: kp.publicKey });
    const tokenExp = Math.floor(Date.now() / 1000) + 900;
    expect(r.expiresAt).toBeLessThanOrEqual(tokenExp + 1);
    expect(r.expiresAt).toBeGreaterThan(tokenExp - 30);
    // it works as a NATS credential
    const svc = await connectAs(hub.urls, formatCreds(r.jwt, kp.seed));
    await svc.flush();
    await svc.close();
    expect(hub.keystore.user("fleet", kp.publicKey)?.external).toEqual({ provider: "corp", subject: "u-1" });
  });

  it("a device token maps claim acct to the site and device_id to the name", async () => {
    const token = await idp.token({ sub: "dev-9", aud: ["other", "fabric"], typ: "device", acct: "acct-42", device_id: "pump-7" });
    const r = await exchangeToken(nc, token, createKeyPair("user"));
    expect(validateUserJwt(r.jwt, hub.keystore.trustAnchors())).toMatchObject({ role: "device", site: "acct-42", name: "pump-7" });
  });

  it("refuses forged, misaddressed, unsigned, expired, early and unmapped tokens with their codes", async () => {
    const kp = createKeyPair("user");
    const claims = { sub: "u-2", aud: "fabric", groups: ["fleet-services"], preferred_username: "svc" };
    const forger = await newIdpKey("RS256");
    const forged = await idp.token(claims, { key: { ...forger, kid: idp.keys[0]?.kid ?? "" } });
    const unsigned = `${Buffer.from(JSON.stringify({ alg: "none", typ: "JWT" })).toString("base64url")}.${Buffer.from(
      JSON.stringify({ ...claims, iss: idp.issuer, exp: Math.floor(Date.now() / 1000) + 600 }),
    ).toString("base64url")}.`;
    const cases: [string, Promise<string>, RegExp][] = [
      ["forged", idp.token(claims).then(() => forged), /EXTERNAL_TOKEN_INVALID: .*signature does not verify/],
      ["wrong audience", idp.token({ ...claims, aud: "someone-else" }), /EXTERNAL_TOKEN_INVALID: .*claim aud/],
      ["unknown issuer", idp.token({ ...claims, iss: "https://evil.example/" }), /EXTERNAL_UNKNOWN_ISSUER/],
      ["alg none", Promise.resolve(unsigned), /EXTERNAL_TOKEN_INVALID/],
      ["expired", idp.token({ ...claims, iat: Math.floor(Date.now() / 1000) - 600, exp: Math.floor(Date.now() / 1000) - 60 }), /EXTERNAL_TOKEN_EXPIRED/],
      ["not yet valid", idp.token({ ...claims, nbf: Math.floor(Date.now() / 1000) + 300 }), /EXTERNAL_TOKEN_EXPIRED: .*nbf/],
      ["no role", idp.token({ ...claims, groups: ["staff"] }), /EXTERNAL_NO_ROLE: .*maps to no role/],
      ["name not a token", idp.token({ ...claims, preferred_username: "a b" }), /EXTERNAL_NO_ROLE: .*not a fabric name/],
      ["not a JWT", Promise.resolve("hello"), /EXTERNAL_TOKEN_INVALID: token is not a JWT/],
    ];
    for (const [what, token, code] of cases) expect(await refusal(exchangeToken(nc, await token, kp)), what).toMatch(code);
    // ES256 is allowed, an algorithm the provider does not list is not (HS256: a shared secret the fabric never holds)
    const es = await idp.rotate("ES256");
    await pollUntil(async () => (await exchangeToken(nc, await idp.token(claims, { key: es }), createKeyPair("user")).then(() => true, () => false)) || undefined, { timeoutMs: 10_000, intervalMs: 500 });
    const hs = `${Buffer.from(JSON.stringify({ alg: "HS256", typ: "JWT", kid: es.kid })).toString("base64url")}.${Buffer.from(JSON.stringify({ ...claims, iss: idp.issuer, exp: Math.floor(Date.now() / 1000) + 600 })).toString("base64url")}.c2ln`;
    expect(await refusal(exchangeToken(nc, hs, kp))).toMatch(/EXTERNAL_TOKEN_INVALID/);
  });

  it("a rotated key is picked up (an unknown kid fetches the key set again); a retired key is refused", async () => {
    const before = idp.fetches();
    const old = idp.keys[0];
    const fresh = await idp.rotate("RS256", true);
    const claims = { sub: "u-3", aud: "fabric", groups: ["fleet-services"], preferred_username: "rotated" };
    // the key set is fetched again at most every 2 s: the first tries may come within that
    const token = await idp.token(claims, { key: fresh });
    const r = await pollUntil(() => exchangeToken(nc, token, createKeyPair("user")).catch(() => undefined), { timeoutMs: 10_000, intervalMs: 500 });
    expect(validateUserJwt(r.jwt, hub.keystore.trustAnchors()).name).toBe("rotated");
    expect(idp.fetches()).toBeGreaterThan(before);
    expect(await refusal(exchangeToken(nc, await idp.token(claims, { key: old }), createKeyPair("user")))).toMatch(/EXTERNAL_TOKEN_INVALID: .*no key/);
  });

  it("revoking the provider's subject disconnects its credentials and refuses its tokens from then on", async () => {
    const claims = { sub: "u-revoked", aud: "fabric", groups: ["fleet-services"], preferred_username: "leaver" };
    const kp = createKeyPair("user");
    const r = await exchangeToken(nc, await idp.token(claims), kp);
    const live = await connectAs(hub.urls, formatCreds(r.jwt, kp.seed));
    const rev = await hub.keystore.withLock(() => revokeExternalSubject(hub.keystore, "corp", "u-revoked"));
    expect(rev.keys).toEqual([kp.publicKey]);
    await pushAccounts(hub.keystore, { servers: hub.urls, accounts: [rev.account] });
    await waitClosed(live, 5_000);
    expect(await refusal(exchangeToken(nc, await idp.token(claims), createKeyPair("user")))).toMatch(/EXTERNAL_REVOKED/);
  });

  it("a nonce proof by another key is refused", async () => {
    const token = await idp.token({ sub: "u-4", aud: "fabric", groups: ["fleet-services"], preferred_username: "x" });
    const kp = createKeyPair("user");
    const other = createKeyPair("user");
    const e = await refusal(exchangeToken(nc, token, { ...kp, sign: (data: Uint8Array) => other.sign(data) }));
    expect(e).toMatch(/PROOF_INVALID/);
  });
});
