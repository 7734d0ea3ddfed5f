export { createKeyPair, keyPairFromSeed, verifySignature, isPublicKey, publicKeyKind } from "./nkeys.js";
export type { NKeyPair, KeyKind } from "./nkeys.js";
export { encodeJwt, decodeJwt, peekJwt } from "./jwt.js";
export {
  accountClaimsSchema,
  operatorClaimsSchema,
  userClaimsSchema,
  userPermissionLimitsSchema,
  UNLIMITED_ACCOUNT_LIMITS,
  UNLIMITED_JETSTREAM_ACCOUNT_LIMITS,
} from "./claims.js";
export type { AccountClaims, OperatorClaims, UserClaims, UserPermissionLimits, Permission, ScopedSigningKey } from "./claims.js";
export { formatCreds, parseCreds } from "./creds.js";
export { BUILTIN_ROLES, BUILTIN_ROLE_TEMPLATES, SITE_ROLES, applyTemplate, expandSubjects, deviceInboxPrefix, bootstrapInboxPrefix, roleDefinitionSchema } from "./roles.js";
export type { BuiltinRole, RoleDefinition, RoleDefinitionInput, TemplateContext } from "./roles.js";
export { validateUserJwt, validateAccountJwt, isRevoked, verifyProof } from "./validate.js";
export type { ValidatedUser, TrustAnchors } from "./validate.js";
export { Keystore, KEYSTORE_VERSION } from "./keystore.js";
export type { AccountRecord, UserRecord, RoleRecord, StoreFile } from "./keystore.js";
export { initKeystore, createAccount, upgradeKeystore, SYSTEM_ROLE_TEMPLATES, DEFAULT_OPERATOR_NAME, DEFAULT_ACCOUNT_NAME, SYSTEM_ACCOUNT_NAME } from "./init.js";
export type { InitOptions, InitResult } from "./init.js";
export { issueUser, revokeUsers, rotateRole, addRole, removeRole, issueBootstrap, hashToken } from "./issue.js";
export type { IssueOptions, IssueResult, RevokeResult, RotateResult, BootstrapResult, BootstrapTokenData } from "./issue.js";
export { pushAccounts, pushClaims, openClaimsPusher, adminConnection, pingServers, serverAccountViews, mintAdminCreds, CLAIMS_UPDATE_SUBJECT } from "./push.js";
export type { PushReport, AccountPushResult, ServerPushResult, ServerAccountView, ServerInfo, ClaimsPusher } from "./push.js";
export { startIdentityService, DEFAULT_DEVICE_EXPIRY_SEC } from "./service.js";
export { NONCE_TTL_MS, NONCE_OPERATIONS } from "./nonces.js";
export type { NonceOperation } from "./nonces.js";
export type { IdentityService, IdentityServiceOptions } from "./service.js";
export { provisionDevice, renewCredential, requestCredential, requestNonce, requestSiteTrust, exchangeToken } from "./provision-client.js";
export { siteTrustSchema } from "./provision-protocol.js";
export type { SiteTrust } from "./provision-protocol.js";
export { credsAuthenticator, connectWithCreds } from "./connect.js";
export type { ProvisionDeviceOptions } from "./provision-client.js";
export { InvalidKeyError, CredentialError, KeystoreError, IssueError, PushError, ProvisionError } from "./errors.js";
export type { CredentialErrorCode } from "./errors.js";
export { identityStatus } from "./status.js";
export type { IdentityStatus } from "./status.js";
export { watchAccounts, ACCOUNT_LOOKUP_TIMEOUT_MS } from "./watch.js";
export { connectTenantServer } from "./tenant-server.js";
export type { TenantServerOptions, TenantServerConnection } from "./tenant-server.js";
export type { AccountWatcher, AccountWatcherOptions } from "./watch.js";
export { assertRegionName, setKeystoreRegion, setDialedLinks, issueLinkCreds, adoptRevocations, MAX_REGION_NAME_LENGTH, REGION_LINK_ROLE } from "./regions.js";
export type { AdoptedRevocations } from "./regions.js";
export { regionSubjects, regionSourceConsumer, linkAccountName, linkUserPermissions, REGION_LIVE_STREAMS, REGION_LIVE_SERVICES } from "./region-claims.js";
export { ExternalIdentityError, ExternalTokenVerifier, exchangeExternalToken, revokeExternalSubject, externalProviderSchema, mapClaims, putProvider, readProviders, readRevokedSubjects, removeProvider, revokeSubject, EXTERNAL_ALGORITHMS } from "./external/index.js";
export type { ExternalProvider, ExternalProviderInput, ExchangeResult } from "./external/index.js";
