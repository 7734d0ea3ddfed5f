export { ExternalIdentityError } from "./errors.js";
export { externalProviderSchema, externalRuleSchema, readProviders, putProvider, removeProvider, readRevokedSubjects, revokeSubject, EXTERNAL_ALGORITHMS } from "./providers.js";
export type { ExternalProvider, ExternalProviderInput, ExternalRule, RevokedSubject } from "./providers.js";
export { ExternalTokenVerifier, JWKS_COOLDOWN_MS, MAX_EXTERNAL_TOKEN_BYTES } from "./verify.js";
export type { VerifiedExternalToken } from "./verify.js";
export { mapClaims } from "./mapping.js";
export type { MappedIdentity } from "./mapping.js";
export { exchangeExternalToken, revokeExternalSubject } from "./exchange.js";
export type { ExchangeResult, ExternalRevocation } from "./exchange.js";
