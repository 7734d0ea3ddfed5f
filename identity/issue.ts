import { z } from "zod";
import { createHash, randomBytes } from "node:crypto";
import { assertToken, InvalidInputError, parseInput } from "../fabric/core/index.js";
import { userClaimsSchema, type UserClaims, type UserPermissionLimits } from "./claims.js";
import { formatCreds } from "./creds.js";
import { IssueError } from "./errors.js";
import { newRole } from "./init.js";
import { encodeJwt } from "./jwt.js";
import type { AccountRecord, Keystore, UserRecord } from "./keystore.js";
import { createKeyPair, isPublicKey } from "./nkeys.js";
import { BUILTIN_ROLES, roleDefinitionSchema, type RoleDefinitionInput } from "./roles.js";
import { identityMetrics } from "./metrics.js";

export interface IssueOptions {
  account: string;
  role: string;
  name: string;
  site?: string | undefined;
  /** Seconds until expiry; 0 or undefined: no expiry. */
  expiresInSec?: number | undefined;
  /** The holder's own public key ("U…"): only the JWT is returned, the seed never leaves the holder. */
  publicKey?: string | undefined;
  /** Extra tags (`key:value`, lowercase). */
  tags?: readonly string[] | undefined;
  /** Do not record it in the keystore (the fabric's own short-lived admin users). */
  ephemeral?: boolean;
  /** Issued in exchange for an identity provider's token (recorded, for `fabric-id revoke external`). */
  external?: { provider: string; subject: string } | undefined;
}

export interface IssueResult {
  record: UserRecord;
  jwt: string;
  /** Only when the fabric generated the key: the holder's seed and a ready `.creds` (write 0600). */
  seed?: string;
  creds?: string;
}

function roleOf(account: AccountRecord, role: string): AccountRecord["roles"][string] {
  const r = account.roles[role];
  if (r === undefined) {
    throw new IssueError("FABRIC_ERR_UNKNOWN_ROLE", `account ${account.name} has no role ${JSON.stringify(role)} (roles: ${Object.keys(account.roles).join(", ")})`);
  }
  return r;
}

/**
 * Issues a user credential signed by a role's scoped key: the JWT carries only the name and tags
 * (`site:<site>`, `role:<role>`); the role key's template carries the permissions. A key that was revoked is
 * refused (a fresh JWT would be newer than its revocation and the server would accept it again).
 */
export function issueUser(ks: Keystore, options: IssueOptions): IssueResult {
  const account = ks.account(options.account);
  const role = roleOf(account, options.role);
  assertToken(options.name, "name");
  if (role.siteScoped && options.site === undefined) throw new InvalidInputError(`role ${options.role} needs --site`);
  if (options.site !== undefined) assertToken(options.site, "site");
  for (const t of options.tags ?? []) {
    if (!/^[a-z0-9_-]+:[a-z0-9_.-]+$/.test(t)) throw new InvalidInputError(`tag ${JSON.stringify(t)} must look like key:value in lowercase`);
  }
  let publicKey: string;
  let seed: string | undefined;
  if (options.publicKey !== undefined) {
    if (!isPublicKey(options.publicKey, "user")) throw new InvalidInputError(`--public-key ${JSON.stringify(options.publicKey)} is not a user public key (U…)`);
    publicKey = options.publicKey;
  } else {
    const kp = createKeyPair("user");
    publicKey = kp.publicKey;
    seed = kp.seed;
  }
  if (account.revocations[publicKey] !== undefined) {
    throw new IssueError("FABRIC_ERR_KEY_REVOKED", `key ${publicKey} was revoked in account ${account.name}; issue a credential for a new key instead`);
  }
  const iat = Math.floor(Date.now() / 1000);
  const exp = options.expiresInSec !== undefined && options.expiresInSec > 0 ? iat + options.expiresInSec : undefined;
  const tags = [`role:${options.role}`, ...(options.site === undefined ? [] : [`site:${options.site}`]), ...(options.tags ?? [])];
  const signer = ks.keyPair(role.key);
  const claims = userClaimsSchema.parse({
    jti: "x",
    iss: signer.publicKey,
    iat,
    sub: publicKey,
    name: options.name,
    aud: "NATS",
    ...(exp === undefined ? {} : { exp }),
    nats: { type: "user", version: 2, issuer_account: account.publicKey, tags },
  });
  const jwt = encodeJwt<UserClaims>(claims, signer);
  const previous = ks.user(account.name, publicKey);
  const record: UserRecord = {
    publicKey,
    name: options.name,
    account: account.name,
    role: options.role,
    ...(options.site === undefined ? {} : { site: options.site }),
    issuedAt: iat,
    ...(exp === undefined ? {} : { expiresAt: exp }),
    issuer: signer.publicKey,
    jwt,
    issueCount: (previous?.issueCount ?? 0) + 1,
    ...(options.external === undefined ? {} : { external: options.external }),
  };
  if (options.ephemeral !== true) ks.saveUser(record);
  identityMetrics.issued(options.role);
  return seed === undefined ? { record, jwt } : { record, jwt, seed, creds: formatCreds(jwt, seed) };
}

export interface RevokeResult {
  revoked: UserRecord[];
  account: AccountRecord;
  accountJwt: string;
}

/**
 * Revokes users by public key or by name (all keys of that name in `role`, when given). The revocation
 * is one new account JWT; push it to make servers disconnect the users.
 */
export function revokeUsers(ks: Keystore, accountName: string, nameOrKey: string, role?: string): RevokeResult {
  const account = ks.account(accountName);
  // by key: one record to read; by name: every record of the account
  const byKey = isPublicKey(nameOrKey, "user") ? ks.user(accountName, nameOrKey) : undefined;
  const candidates = byKey !== undefined ? [byKey] : ks.users(accountName);
  const matches = candidates.filter((u) => (u.publicKey === nameOrKey || u.name === nameOrKey) && (role === undefined || u.role === role));
  if (matches.length === 0 && !isPublicKey(nameOrKey, "user")) {
    throw new IssueError("FABRIC_ERR_ISSUE", `no ${role ?? "user"} named ${JSON.stringify(nameOrKey)} in account ${accountName}`);
  }
  const now = Math.floor(Date.now() / 1000);
  const keys = matches.length > 0 ? matches.map((m) => m.publicKey) : [nameOrKey];
  const revocations = { ...account.revocations };
  for (const k of keys) revocations[k] = Math.max(now, revocations[k] ?? 0, ...matches.filter((m) => m.publicKey === k).map((m) => m.issuedAt));
  const { record, jwt } = ks.saveAccount({ ...account, revocations });
  const revoked = matches.map((m) => ({ ...m, revokedAt: now }));
  for (const r of revoked) ks.saveUser(r);
  return { revoked, account: record, accountJwt: jwt };
}

export interface RotateResult {
  role: string;
  oldKey: string;
  newKey: string;
  /** Credentials the old key issued that were still valid: they stop working once this is pushed. */
  invalidated: number;
  account: AccountRecord;
  accountJwt: string;
}

/** Rotates a role's signing key: every credential the old key issued stops working. */
export function rotateRole(ks: Keystore, accountName: string, roleName: string): RotateResult {
  const account = ks.account(accountName);
  const role = roleOf(account, roleName);
  const now = Math.floor(Date.now() / 1000);
  const invalidated = ks
    .users(accountName)
    .filter((u) => u.issuer === role.key && u.revokedAt === undefined && (u.expiresAt === undefined || u.expiresAt > now)).length;
  const fresh = newRole(ks, role.template, role.siteScoped, role.builtin);
  fresh.retired = [...role.retired, role.key];
  const { record, jwt } = ks.saveAccount({ ...account, roles: { ...account.roles, [roleName]: fresh } });
  ks.removeSeed(role.key);
  return { role: roleName, oldKey: role.key, newKey: fresh.key, invalidated, account: record, accountJwt: jwt };
}

/**
 * Adds a custom role: subjects it may publish and subscribe to, which may use `{{name()}}`, `{{tag(site)}}`
 * and the server's other template functions.
 */
export function addRole(ks: Keystore, accountName: string, definition: RoleDefinitionInput): { account: AccountRecord; accountJwt: string } {
  const def = parseInput(roleDefinitionSchema, definition, "role");
  if (def.pub === undefined && def.sub === undefined) throw new InvalidInputError("a role needs --pub or --sub subjects");
  const account = ks.account(accountName);
  if (account.roles[def.name] !== undefined) throw new IssueError("FABRIC_ERR_ISSUE", `account ${accountName} already has a role ${def.name}`);
  const template: UserPermissionLimits = {
    ...(def.pub === undefined ? {} : { pub: { allow: def.pub } }),
    ...(def.sub === undefined ? {} : { sub: { allow: def.sub } }),
    subs: -1,
    data: -1,
    payload: -1,
  };
  const { record, jwt } = ks.saveAccount({ ...account, roles: { ...account.roles, [def.name]: newRole(ks, template, def.siteScoped, false) } });
  return { account: record, accountJwt: jwt };
}

/** Removes a custom role (built-in roles can be rotated, not removed); its users are cut off. */
export function removeRole(ks: Keystore, accountName: string, roleName: string): { account: AccountRecord; accountJwt: string } {
  const account = ks.account(accountName);
  const role = roleOf(account, roleName);
  if ((BUILTIN_ROLES as readonly string[]).includes(roleName)) throw new IssueError("FABRIC_ERR_ISSUE", `role ${roleName} is built in: rotate it instead`);
  const roles = { ...account.roles };
  delete roles[roleName];
  const saved = ks.saveAccount({ ...account, roles });
  ks.removeSeed(role.key);
  return { account: saved.record, accountJwt: saved.jwt };
}

// --- bootstrap tokens ---

export interface BootstrapTokenData {
  site: string;
  account: string;
  createdAt: number;
  expiresAt: number;
}

/** A token's record as the keystore holds it; once spent, `usedBy` says by which device (name and key). */
export const bootstrapTokenSchema = z.object({
  site: z.string(),
  account: z.string(),
  createdAt: z.number(),
  expiresAt: z.number(),
  usedBy: z.object({ name: z.string(), publicKey: z.string() }).optional(),
});

export function hashToken(token: string): string {
  return createHash("sha256").update(token, "utf8").digest("hex");
}

export interface BootstrapResult {
  /** The bootstrap credential devices of the site start with: it reaches only the provisioning subjects. */
  creds: string;
  bootstrapName: string;
  tokens: string[];
  expiresAt: number;
}

/** `fabric-id issue bootstrap`: a bootstrap credential and `count` one-time tokens for a site. */
export function issueBootstrap(ks: Keystore, accountName: string, site: string, count: number, ttlSec: number): BootstrapResult {
  assertToken(site, "site");
  if (!Number.isInteger(count) || count < 1 || count > 100_000) throw new InvalidInputError(`--count ${count} must be a whole number from 1 to 100000`);
  if (ttlSec <= 0) throw new InvalidInputError("--ttl must be a positive duration");
  const bootstrapName = `boot-${site}-${randomBytes(4).toString("hex")}`.slice(0, 64);
  const issued = issueUser(ks, { account: accountName, role: "bootstrap", name: bootstrapName, site, expiresInSec: ttlSec });
  const now = Math.floor(Date.now() / 1000);
  const tokens: string[] = [];
  for (let i = 0; i < count; i++) {
    const token = randomBytes(24).toString("base64url");
    const data: BootstrapTokenData = { site, account: accountName, createdAt: now, expiresAt: now + ttlSec };
    ks.saveToken(accountName, hashToken(token), data);
    tokens.push(token);
  }
  if (issued.creds === undefined) throw new IssueError("FABRIC_ERR_ISSUE", "bootstrap credential was issued without a seed");
  return { creds: issued.creds, bootstrapName, tokens, expiresAt: now + ttlSec };
}
