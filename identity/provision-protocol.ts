import { z } from "zod";
import { MAX_TOKEN_LENGTH, TOKEN_PATTERN } from "../fabric/core/index.js";
import { nonceOperationSchema } from "./nonces.js";

/**
 * The identity service's wire protocol (JSON over NATS request/reply on `$FABRIC.id.*`), shared by the
 * service and the device-side client.
 */
export const nonceReplySchema = z.strictObject({ nonce: z.string() });

/** A nonce is asked for one operation and accepted only for it, once. */
export const nonceRequestSchema = z.strictObject({ operation: nonceOperationSchema });

export const provisionRequestSchema = z.strictObject({
  token: z.string().min(1).max(256),
  name: z.string().regex(TOKEN_PATTERN, "use lowercase letters, digits, '_' and '-'").max(MAX_TOKEN_LENGTH, `use at most ${MAX_TOKEN_LENGTH} characters`),
  publicKey: z.string().min(1).max(64),
  nonce: z.string().min(1).max(512),
  /** base64url Ed25519 signature by the device's key over the nonce's UTF-8 bytes. */
  signature: z.string().min(1).max(256),
});
export type ProvisionRequest = z.infer<typeof provisionRequestSchema>;

export const renewRequestSchema = z.strictObject({
  jwt: z.string().min(1).max(16_384),
  nonce: z.string().min(1).max(512),
  signature: z.string().min(1).max(256),
});
export type RenewRequest = z.infer<typeof renewRequestSchema>;

/** An identity provider's token, for a fabric credential on the caller's own key (proven by signing the nonce). */
export const exchangeRequestSchema = z.strictObject({
  token: z.string().min(1).max(16_384),
  publicKey: z.string().min(1).max(64),
  nonce: z.string().min(1).max(512),
  signature: z.string().min(1).max(256),
});
export type ExchangeRequest = z.infer<typeof exchangeRequestSchema>;

/** Every refusal of the service: a stable code and a message. */
export const errorReplySchema = z.strictObject({ error: z.strictObject({ code: z.string(), message: z.string() }) });

export const credentialReplySchema = z.union([z.strictObject({ jwt: z.string(), expiresAt: z.number().int().optional() }), errorReplySchema]);
export type CredentialReply = z.infer<typeof credentialReplySchema>;

/** A site's leaf asks for its trust, signing a nonce; `agent` asks for the site agent's own credential too. */
export const siteTrustRequestSchema = z.strictObject({
  ...renewRequestSchema.shape,
  agent: z.boolean().default(false),
  /** Also the credentials of the site's own MQTT ingress (its tenant credential and its account watcher's). */
  ingress: z.boolean().default(false),
});

/** What a site's leaf gets from `$FABRIC.id.site`: the trust its server needs offline, and a sync credential. */
export const siteTrustSchema = z.strictObject({
  operatorJwt: z.string().min(1),
  systemAccount: z.string().min(1),
  /** The tenant account's public key (the leaf's own account). */
  account: z.string().min(1),
  /** The current account JWTs (system and tenant) by public key. */
  accounts: z.record(z.string(), z.string()),
  /** A short-lived, loopback-only system user that may push these JWTs into the site's own server. */
  syncCreds: z.string().min(1),
  /** When asked: the site agent's credential (role edge-agent, loopback only, no expiry; revocable by name). */
  agentCreds: z.string().min(1).optional(),
  /** When asked: the site's MQTT ingress credential (role edge-ingress) and its watcher's (system, edge-watcher). */
  ingressCreds: z.string().min(1).optional(),
  watcherCreds: z.string().min(1).optional(),
});
export type SiteTrust = z.infer<typeof siteTrustSchema>;

export const siteTrustReplySchema = z.union([siteTrustSchema, errorReplySchema]);
