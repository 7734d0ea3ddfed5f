import { errorMessage } from "../fabric/core/index.js";
import { connectWithCreds } from "./connect.js";
import { ProvisionError } from "./errors.js";
import { parseCreds } from "./creds.js";
import { keyPairFromSeed, type NKeyPair } from "./nkeys.js";
import { z } from "zod";
import type { NonceOperation } from "./nonces.js";
import { credentialReplySchema, errorReplySchema, nonceReplySchema, siteTrustReplySchema, type SiteTrust } from "./provision-protocol.js";
import { bootstrapInboxPrefix } from "./roles.js";
import { peekJwt } from "./jwt.js";
import { subjects } from "../fabric/core/index.js";
import type { NatsConnection } from "@nats-io/transport-node";

export const DEFAULT_REQUEST_TIMEOUT_MS = 5_000; // 5 s

async function requestJson(nc: NatsConnection, subject: string, body: unknown): Promise<unknown> {
  const m = await nc.request(subject, body === undefined ? "" : JSON.stringify(body), { timeout: DEFAULT_REQUEST_TIMEOUT_MS });
  return m.json();
}

/** A provision or renewal request to the identity service: the credential, or its refusal as a ProvisionError. */
export async function requestCredential(nc: NatsConnection, subject: string, body: unknown): Promise<{ jwt: string; expiresAt?: number }> {
  const r = credentialReplySchema.parse(await requestJson(nc, subject, body));
  if ("error" in r) throw new ProvisionError(r.error.code as ConstructorParameters<typeof ProvisionError>[0], r.error.message);
  return r;
}

/** A fresh nonce from the identity service, for one request of `operation`; or its refusal as a ProvisionError. */
export async function requestNonce(nc: NatsConnection, operation: NonceOperation): Promise<string> {
  const r = z.union([nonceReplySchema, errorReplySchema]).parse(await requestJson(nc, subjects.identity.nonce, { operation }));
  if ("error" in r) throw new ProvisionError(r.error.code as ConstructorParameters<typeof ProvisionError>[0], r.error.message);
  return r.nonce;
}

async function signedNonce(nc: NatsConnection, kp: NKeyPair, operation: NonceOperation): Promise<{ nonce: string; signature: string }> {
  const nonce = await requestNonce(nc, operation);
  return { nonce, signature: Buffer.from(kp.sign(Buffer.from(nonce, "utf8"))).toString("base64url") };
}

export interface ProvisionDeviceOptions {
  servers: string | string[];
  /** The site's bootstrap `.creds` content. */
  bootstrapCreds: string;
  token: string;
  name: string;
  /** The device's own key pair; its seed never leaves the device. */
  keyPair: NKeyPair;
}

/** Device side of provisioning: proves possession of its key over a server nonce and spends a token. */
export async function provisionDevice(options: ProvisionDeviceOptions): Promise<{ jwt: string; expiresAt?: number }> {
  const { jwt: bootJwt } = parseCreds(options.bootstrapCreds);
  const name = peekJwt(bootJwt)["name"];
  const bootName = typeof name === "string" ? name : "";
  const nc = await connectWithCreds(options.bootstrapCreds, { servers: options.servers, inboxPrefix: bootstrapInboxPrefix(bootName), name: `provision ${options.name}` });
  try {
    const proof = await signedNonce(nc, options.keyPair, "provision");
    return await requestCredential(nc, subjects.identity.provision, { token: options.token, name: options.name, publicKey: options.keyPair.publicKey, ...proof });
  } catch (err) {
    if (err instanceof ProvisionError) throw err;
    throw new ProvisionError("FABRIC_ERR_PROVISION", `provisioning failed: ${errorMessage(err)}`, { cause: err });
  } finally {
    await nc.close();
  }
}

/**
 * An identity provider's token for a fabric credential on `keyPair` (its seed never leaves the caller), over any
 * connection that reaches the identity service (a bootstrap credential's, say). Refusals are ProvisionErrors
 * with the service's code (FABRIC_ERR_EXTERNAL_TOKEN_INVALID, …_EXPIRED, …_NO_ROLE, …_REVOKED, …).
 */
export async function exchangeToken(nc: NatsConnection, token: string, keyPair: NKeyPair): Promise<{ jwt: string; expiresAt?: number }> {
  const proof = await signedNonce(nc, keyPair, "exchange");
  return requestCredential(nc, subjects.identity.exchange, { token, publicKey: keyPair.publicKey, ...proof });
}

/** Device side of renewal: connects with its current creds and gets a fresh JWT for the same key. */
export async function renewCredential(options: { servers: string | string[]; creds: string; inboxPrefix: string }): Promise<{ jwt: string; expiresAt?: number }> {
  const { jwt, seed } = parseCreds(options.creds);
  const kp = keyPairFromSeed(seed);
  const nc = await connectWithCreds(options.creds, { servers: options.servers, inboxPrefix: options.inboxPrefix, name: "renew" });
  try {
    const proof = await signedNonce(nc, kp, "renew");
    return await requestCredential(nc, subjects.identity.renew, { jwt, ...proof });
  } catch (err) {
    if (err instanceof ProvisionError) throw err;
    throw new ProvisionError("FABRIC_ERR_PROVISION", `renewal failed: ${errorMessage(err)}`, { cause: err });
  } finally {
    await nc.close();
  }
}

/**
 * A site's leaf asks for its trust (operator and account JWTs, a sync credential) over a connection that
 * reaches the hub's identity service (through the site's leaf link), signing a nonce with the leaf's key.
 */
export async function requestSiteTrust(nc: NatsConnection, leafCreds: string, options: { agent?: boolean; ingress?: boolean } = {}): Promise<SiteTrust> {
  const { jwt, seed } = parseCreds(leafCreds);
  const proof = await signedNonce(nc, keyPairFromSeed(seed), "site");
  const r = siteTrustReplySchema.parse(await requestJson(nc, subjects.identity.site, { jwt, ...proof, agent: options.agent === true, ingress: options.ingress === true }));
  if ("error" in r) throw new ProvisionError(r.error.code as ConstructorParameters<typeof ProvisionError>[0], r.error.message);
  return r;
}
