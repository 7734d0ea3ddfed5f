import { createRemoteJWKSet, decodeJwt, errors, jwtVerify, type JWTPayload } from "jose";
import { errorMessage } from "../../fabric/core/index.js";
import { ExternalIdentityError } from "./errors.js";
import type { ExternalProvider } from "./providers.js";

/**
 * After fetching a provider's keys, no other fetch for this long: a token whose `kid` is unknown triggers one
 * fetch (a rotated key is picked up), a flood of unknown `kid`s no more than one fetch per period.
 */
export const JWKS_COOLDOWN_MS = 2_000;
/** Keys fetched are trusted this long before they are fetched again. */
export const JWKS_MAX_AGE_MS = 10 * 60_000;
/** The longest IdP token taken (a bound on work before the signature is checked). */
export const MAX_EXTERNAL_TOKEN_BYTES = 16_384;

export interface VerifiedExternalToken {
  provider: ExternalProvider;
  claims: JWTPayload & { sub: string; exp: number };
}

type Jwks = ReturnType<typeof createRemoteJWKSet>;

/** Checks IdP tokens against their providers' published keys (kept per provider, refreshed as above). */
export class ExternalTokenVerifier {
  private readonly keySets = new Map<string, { uri: string; jwks: Jwks }>();

  private jwks(p: ExternalProvider): Jwks {
    const have = this.keySets.get(p.name);
    if (have !== undefined && have.uri === p.jwksUri) return have.jwks;
    const jwks = createRemoteJWKSet(new URL(p.jwksUri), { cooldownDuration: JWKS_COOLDOWN_MS, cacheMaxAge: JWKS_MAX_AGE_MS, timeoutDuration: 5_000 });
    this.keySets.set(p.name, { uri: p.jwksUri, jwks });
    return jwks;
  }

  /**
   * Verifies `token` for the provider its `iss` names: signature by a key of the provider's set (an allowed
   * algorithm only: `none` and HMAC never), `iss`, `aud`, `exp` (required), `nbf`, a `sub`. Throws an
   * ExternalIdentityError naming what was wrong.
   */
  async verify(token: string, providers: readonly ExternalProvider[]): Promise<VerifiedExternalToken> {
    if (token.length > MAX_EXTERNAL_TOKEN_BYTES) throw new ExternalIdentityError("FABRIC_ERR_EXTERNAL_TOKEN_INVALID", `token is longer than ${MAX_EXTERNAL_TOKEN_BYTES} bytes`);
    let iss: string | undefined;
    try {
      iss = decodeJwt(token).iss;
    } catch (err) {
      throw new ExternalIdentityError("FABRIC_ERR_EXTERNAL_TOKEN_INVALID", `token is not a JWT: ${errorMessage(err)}`, { cause: err });
    }
    const provider = providers.find((p) => p.issuer === iss);
    if (provider === undefined) throw new ExternalIdentityError("FABRIC_ERR_EXTERNAL_UNKNOWN_ISSUER", `no identity provider is configured for issuer ${JSON.stringify(iss ?? null)}`);
    try {
      const { payload } = await jwtVerify(token, this.jwks(provider), {
        issuer: provider.issuer,
        audience: provider.audiences,
        algorithms: provider.algorithms,
        clockTolerance: provider.clockToleranceSec,
        requiredClaims: ["exp", "sub"],
      });
      if (typeof payload.sub !== "string" || payload.sub === "" || typeof payload.exp !== "number") {
        throw new ExternalIdentityError("FABRIC_ERR_EXTERNAL_TOKEN_INVALID", "token has no sub or exp");
      }
      return { provider, claims: { ...payload, sub: payload.sub, exp: payload.exp } };
    } catch (err) {
      throw refusal(err, provider);
    }
  }
}

/** A jose error as the fabric's refusal, saying what was wrong. */
function refusal(err: unknown, p: ExternalProvider): ExternalIdentityError {
  if (err instanceof ExternalIdentityError) return err;
  if (err instanceof errors.JWTExpired) return new ExternalIdentityError("FABRIC_ERR_EXTERNAL_TOKEN_EXPIRED", `token of ${p.name} has expired`, { cause: err });
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.claim === "nbf") return new ExternalIdentityError("FABRIC_ERR_EXTERNAL_TOKEN_EXPIRED", `token of ${p.name} is not valid yet (nbf)`, { cause: err });
    return new ExternalIdentityError("FABRIC_ERR_EXTERNAL_TOKEN_INVALID", `token of ${p.name}: claim ${err.claim} ${err.reason === "check_failed" ? "is not what the provider's configuration allows" : "is missing or malformed"} (${err.message})`, { cause: err });
  }
  if (err instanceof errors.JOSEAlgNotAllowed) return new ExternalIdentityError("FABRIC_ERR_EXTERNAL_TOKEN_INVALID", `token of ${p.name} uses an algorithm not allowed (allowed: ${p.algorithms.join(", ")})`, { cause: err });
  if (err instanceof errors.JWSSignatureVerificationFailed) return new ExternalIdentityError("FABRIC_ERR_EXTERNAL_TOKEN_INVALID", `token of ${p.name}: signature does not verify`, { cause: err });
  if (err instanceof errors.JWKSNoMatchingKey) return new ExternalIdentityError("FABRIC_ERR_EXTERNAL_TOKEN_INVALID", `token of ${p.name}: no key of the provider's set matches (kid unknown after a fetch of ${p.jwksUri})`, { cause: err });
  if (err instanceof errors.JWKSTimeout || err instanceof errors.JWKSInvalid || (err instanceof Error && /fetch|ECONNREFUSED|ENOTFOUND|status code/i.test(err.message))) {
    return new ExternalIdentityError("FABRIC_ERR_EXTERNAL_JWKS_UNAVAILABLE", `keys of ${p.name} could not be fetched from ${p.jwksUri}: ${errorMessage(err)}`, { cause: err });
  }
  return new ExternalIdentityError("FABRIC_ERR_EXTERNAL_TOKEN_INVALID", `token of ${p.name} is invalid: ${errorMessage(err)}`, { cause: err });
}
