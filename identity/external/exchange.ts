import { InvalidInputError, isFabricError } from "../../fabric/core/index.js";
import { issueUser, revokeUsers } from "../issue.js";
import type { Keystore } from "../keystore.js";
import { ExternalIdentityError } from "./errors.js";
import { mapClaims } from "./mapping.js";
import { readProviders, readRevokedSubjects, revokeSubject } from "./providers.js";
import type { ExternalTokenVerifier } from "./verify.js";

export interface ExchangeResult {
  jwt: string;
  /** Unix seconds; never after the IdP token's `exp`. */
  expiresAt: number;
  provider: string;
  subject: string;
  role: string;
  name: string;
  site?: string;
}

/**
 * Token exchange (RFC 8693 in spirit): an identity provider's token in, a fabric user JWT out for the holder's
 * own key (`publicKey`, whose possession the caller has proven). The token is verified against its provider
 * (ExternalTokenVerifier); a subject revoked in the fabric (`fabric-id revoke external`) is refused; the
 * provider's rules give the role, site and name; the credential expires with the token, or sooner
 * (`maxTtlSec`). Recorded in the keystore with its provider and subject.
 */
export async function exchangeExternalToken(ks: Keystore, verifier: ExternalTokenVerifier, token: string, publicKey: string, now = Date.now()): Promise<ExchangeResult> {
  const { provider, claims } = await verifier.verify(token, readProviders(ks));
  if (readRevokedSubjects(ks).some((s) => s.provider === provider.name && s.subject === claims.sub)) {
    throw new ExternalIdentityError("FABRIC_ERR_EXTERNAL_REVOKED", `subject ${JSON.stringify(claims.sub)} of ${provider.name} has been revoked in the fabric`);
  }
  const mapped = mapClaims(provider, claims);
  const account = provider.account ?? ks.tenantAccounts()[0]?.name;
  if (account === undefined) throw new ExternalIdentityError("FABRIC_ERR_EXTERNAL_CONFIG", "the keystore has no tenant account");
  const ttl = Math.min(provider.maxTtlSec, claims.exp - Math.floor(now / 1000));
  if (ttl <= 0) throw new ExternalIdentityError("FABRIC_ERR_EXTERNAL_TOKEN_EXPIRED", `token of ${provider.name} has expired`);
  const issued = await ks.withLock(() => {
    try {
      return issueUser(ks, {
        account,
        role: mapped.role,
        name: mapped.name,
        site: mapped.site,
        publicKey,
        expiresInSec: ttl,
        tags: [`idp:${provider.name}`],
        external: { provider: provider.name, subject: claims.sub },
      });
    } catch (err) {
      // a rule naming a role the account lacks, or a site-scoped role without a site: the configuration's fault
      if (err instanceof InvalidInputError || (isFabricError(err) && err.code === "FABRIC_ERR_UNKNOWN_ROLE")) {
        throw new ExternalIdentityError("FABRIC_ERR_EXTERNAL_NO_ROLE", `provider ${provider.name}, rule ${mapped.rule + 1}: ${err.message}`, { cause: err });
      }
      throw err;
    }
  });
  return {
    jwt: issued.jwt,
    expiresAt: issued.record.expiresAt ?? Math.floor(now / 1000) + ttl,
    provider: provider.name,
    subject: claims.sub,
    role: mapped.role,
    name: mapped.name,
    ...(mapped.site === undefined ? {} : { site: mapped.site }),
  };
}

export interface ExternalRevocation {
  provider: string;
  account: string;
  /** The user keys issued for the subject that are now revoked (disconnect them). */
  keys: string[];
}

/**
 * `fabric-id revoke external <sub> [--provider NAME]` (the only provider when there is one): refuses every future exchange of the subject's tokens, and revokes every
 * credential issued for it (one account JWT: push it, and the servers disconnect them). Call under the keystore
 * lock.
 */
export function revokeExternalSubject(ks: Keystore, providerName: string | undefined, subject: string): ExternalRevocation {
  const all = readProviders(ks);
  const have = all.map((p) => p.name).join(", ") || "none";
  if (providerName === undefined && all.length !== 1) throw new ExternalIdentityError("FABRIC_ERR_EXTERNAL_CONFIG", `name the identity provider of subject ${JSON.stringify(subject)} (have: ${have})`);
  const provider = providerName === undefined ? all[0] : all.find((p) => p.name === providerName);
  if (provider === undefined) throw new ExternalIdentityError("FABRIC_ERR_EXTERNAL_CONFIG", `no identity provider ${JSON.stringify(providerName)} (have: ${have})`);
  const account = provider.account ?? ks.tenantAccounts()[0]?.name;
  if (account === undefined) throw new ExternalIdentityError("FABRIC_ERR_EXTERNAL_CONFIG", "the keystore has no tenant account");
  revokeSubject(ks, provider.name, subject);
  const now = Math.floor(Date.now() / 1000);
  const keys = ks
    .users(account)
    .filter((u) => u.external?.provider === provider.name && u.external.subject === subject && u.revokedAt === undefined && (u.expiresAt === undefined || u.expiresAt > now))
    .map((u) => u.publicKey);
  for (const key of keys) revokeUsers(ks, account, key);
  return { provider: provider.name, account, keys };
}
