import { accountClaimsSchema, userClaimsSchema, type AccountClaims, type UserClaims, type UserPermissionLimits, type ScopedSigningKey } from "./claims.js";
import { CredentialError } from "./errors.js";
import { decodeJwt } from "./jwt.js";
import { isPublicKey, verifySignature } from "./nkeys.js";
import { applyTemplate } from "./roles.js";

/** What a verified user credential grants. */
export interface ValidatedUser {
  publicKey: string;
  name: string;
  account: string;
  accountName: string;
  /** The scoped signing key's role, or undefined for a user signed by the account key itself. */
  role: string | undefined;
  /** The signing key that issued the user JWT. */
  issuer: string;
  tags: string[];
  site: string | undefined;
  /** The effective permissions (templates expanded for this user). */
  permissions: UserPermissionLimits;
  expiresAt: number | undefined;
  claims: UserClaims;
  /** The JWT itself, to re-check it when the account changes. */
  jwt: string;
}

export interface TrustAnchors {
  /** Operator public keys (identity and signing keys) that may sign account JWTs. */
  operatorKeys: readonly string[];
  /** The current account JWT for an account public key, or undefined if unknown. */
  accountJwt(accountPublicKey: string): string | undefined;
}

/** Clock skew tolerated on `nbf`, like nats-server's (none on `exp`). */
export const CLOCK_SKEW_SECONDS = 0;

function checkDates(claims: { exp?: number | undefined; nbf?: number | undefined }, nowSec: number, what: string): void {
  if (claims.exp !== undefined && claims.exp > 0 && claims.exp <= nowSec) {
    throw new CredentialError("FABRIC_ERR_CREDENTIAL_EXPIRED", `${what} expired at ${new Date(claims.exp * 1000).toISOString()}`);
  }
  if (claims.nbf !== undefined && claims.nbf > 0 && claims.nbf > nowSec + CLOCK_SKEW_SECONDS) {
    throw new CredentialError("FABRIC_ERR_CREDENTIAL_NOT_YET_VALID", `${what} is not valid before ${new Date(claims.nbf * 1000).toISOString()}`);
  }
}

/** Decodes and checks an account JWT against the operator keys. */
export function validateAccountJwt(accountJwt: string, operatorKeys: readonly string[], now = Date.now()): AccountClaims {
  const account = decodeJwt(accountJwt, accountClaimsSchema, "account JWT");
  if (!operatorKeys.includes(account.iss)) {
    throw new CredentialError("FABRIC_ERR_CREDENTIAL_UNTRUSTED_ISSUER", `account JWT for ${account.sub} is signed by ${account.iss}, which is not a trusted operator key`);
  }
  checkDates(account, Math.floor(now / 1000), "account JWT");
  return account;
}

/** True when the account's revocations cover a user JWT issued at `iat`. */
export function isRevoked(account: AccountClaims, userPublicKey: string, iat: number): boolean {
  const rev = account.nats.revocations ?? {};
  const t = rev[userPublicKey];
  const all = rev["*"];
  return (t !== undefined && iat <= t) || (all !== undefined && iat <= all);
}

/**
 * Validates a user JWT the way nats-server does: its signature; the issuer is the account or one of its
 * signing keys; the account JWT is signed by a trusted operator; expiry and not-before of both; revocations;
 * a scoped user carries no permissions of its own. Returns the effective permissions. Throws CredentialError.
 */
export function validateUserJwt(userJwt: string, trust: TrustAnchors, now = Date.now()): ValidatedUser {
  const user = decodeJwt(userJwt, userClaimsSchema, "user JWT");
  if (!isPublicKey(user.sub, "user")) throw new CredentialError("FABRIC_ERR_CREDENTIAL_MALFORMED", "user JWT subject is not a user public key");
  const nowSec = Math.floor(now / 1000);
  checkDates(user, nowSec, "user JWT");
  const accountKey = user.nats.issuer_account ?? user.iss;
  const accountJwt = trust.accountJwt(accountKey);
  if (accountJwt === undefined) throw new CredentialError("FABRIC_ERR_CREDENTIAL_UNTRUSTED_ISSUER", `user JWT names account ${accountKey}, which is unknown here`);
  const account = validateAccountJwt(accountJwt, trust.operatorKeys, now);
  if (account.sub !== accountKey) throw new CredentialError("FABRIC_ERR_CREDENTIAL_WRONG_ACCOUNT", "account JWT does not match the user's account");
  let scope: ScopedSigningKey | undefined;
  if (user.iss !== account.sub) {
    const keys = account.nats.signing_keys ?? [];
    const match = keys.find((k) => (typeof k === "string" ? k : k.key) === user.iss);
    if (match === undefined) {
      throw new CredentialError("FABRIC_ERR_CREDENTIAL_UNTRUSTED_ISSUER", `user JWT is signed by ${user.iss}, which is not a signing key of account ${account.name ?? account.sub}`);
    }
    if (typeof match !== "string") scope = match;
  } else if (user.nats.issuer_account !== undefined && user.nats.issuer_account !== account.sub) {
    throw new CredentialError("FABRIC_ERR_CREDENTIAL_WRONG_ACCOUNT", "issuer_account does not match the signer");
  }
  if (isRevoked(account, user.sub, user.iat)) {
    throw new CredentialError("FABRIC_ERR_CREDENTIAL_REVOKED", `user ${user.name ?? user.sub} has been revoked`);
  }
  const tags = user.nats.tags ?? [];
  let permissions: UserPermissionLimits;
  if (scope !== undefined) {
    if (user.nats.pub !== undefined || user.nats.sub !== undefined) {
      throw new CredentialError("FABRIC_ERR_CREDENTIAL_MALFORMED", "a user of a scoped signing key must not carry permissions of its own");
    }
    permissions = applyTemplate(scope.template, {
      name: user.name ?? "",
      subject: user.sub,
      accountName: account.name ?? "",
      accountSubject: account.sub,
      tags,
      accountTags: account.nats.tags ?? [],
    });
  } else {
    const { pub, sub, resp, subs, data, payload, bearer_token, allowed_connection_types } = user.nats;
    permissions = { pub, sub, resp, subs, data, payload, bearer_token, allowed_connection_types };
  }
  const siteTag = tags.find((t) => t.startsWith("site:"));
  return {
    publicKey: user.sub,
    name: user.name ?? "",
    account: account.sub,
    accountName: account.name ?? "",
    role: scope?.role,
    issuer: user.iss,
    tags,
    site: siteTag === undefined ? undefined : siteTag.slice("site:".length),
    permissions,
    expiresAt: user.exp,
    claims: user,
    jwt: userJwt.trim(),
  };
}

/**
 * Checks a proof of possession: `signature` (base64url) is the user key's signature over `nonce`. This is
 * what the server asks of a client on CONNECT and what the ingress and gateway ask of their callers.
 */
export function verifyProof(userPublicKey: string, nonce: string | Uint8Array, signatureB64: string): boolean {
  const data = typeof nonce === "string" ? Buffer.from(nonce, "utf8") : nonce;
  return verifySignature(userPublicKey, data, Buffer.from(signatureB64, "base64url"));
}
