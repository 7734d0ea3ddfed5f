import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK, type JWTPayload } from "jose";
import type { Harness } from "./servers.js";

export interface TestIdpKey {
  kid: string;
  alg: "RS256" | "ES256";
  privateKey: CryptoKey;
  publicJwk: JWK;
}

/**
 * A local identity provider for tests: real keys (jose), a JWKS endpoint on a port the system picks (its key set
 * can be changed: a rotation), and tokens signed as an IdP signs them. Counts the JWKS fetches.
 */
export interface TestIdp {
  issuer: string;
  jwksUri: string;
  keys: TestIdpKey[];
  fetches(): number;
  /** Adds a key and publishes it; with `retire`, the old ones are no longer published. */
  rotate(alg?: TestIdpKey["alg"], retire?: boolean): Promise<TestIdpKey>;
  /** A token with these claims (iss, iat, exp in 10 min unless given), signed by `key` (the newest by default). */
  token(claims: JWTPayload, options?: { key?: TestIdpKey; expiresInSec?: number; header?: Record<string, unknown> }): Promise<string>;
}

export async function newIdpKey(alg: TestIdpKey["alg"] = "RS256"): Promise<TestIdpKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const kid = `k-${Math.random().toString(36).slice(2, 10)}`;
  return { kid, alg, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg, use: "sig" } };
}

export async function startTestIdp(h: Harness): Promise<TestIdp> {
  const keys: TestIdpKey[] = [await newIdpKey("RS256")];
  let published: TestIdpKey[] = [...keys];
  let fetches = 0;
  const server: Server = createServer((req, res) => {
    if (req.url === "/jwks") {
      fetches++;
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ keys: published.map((k) => k.publicJwk) }));
      return;
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  h.defer(() => new Promise<void>((r) => server.close(() => r())));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const idp: TestIdp = {
    issuer: `${base}/`,
    jwksUri: `${base}/jwks`,
    keys,
    fetches: () => fetches,
    rotate: async (alg = "RS256", retire = false) => {
      const k = await newIdpKey(alg);
      keys.push(k);
      published = retire ? [k] : [...published, k];
      return k;
    },
    token: async (claims, options = {}) => {
      const key = options.key ?? keys[keys.length - 1];
      if (key === undefined) throw new Error("no key");
      const now = Math.floor(Date.now() / 1000);
      return new SignJWT({ ...claims })
        .setProtectedHeader({ alg: key.alg, kid: key.kid, ...options.header })
        .setIssuer(claims.iss ?? idp.issuer)
        .setIssuedAt(claims.iat ?? now)
        .setExpirationTime(claims.exp ?? now + (options.expiresInSec ?? 600))
        .sign(key.privateKey);
    },
  };
  return idp;
}
