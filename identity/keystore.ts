import { existsSync, readdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { acquireLockFile, assertToken, ensurePrivateDir, writeSecretFile } from "../fabric/core/index.js";
import { accountClaimsSchema, userPermissionLimitsSchema, type AccountClaims, UNLIMITED_ACCOUNT_LIMITS, UNLIMITED_JETSTREAM_ACCOUNT_LIMITS } from "./claims.js";
import { KeystoreError } from "./errors.js";
import { encodeJwt } from "./jwt.js";
import { keyPairFromSeed, type NKeyPair } from "./nkeys.js";
import { linkAccountClaims, linkAccountName, tenantRegionClaims, type RegionAccountClaims } from "./region-claims.js";
import type { TrustAnchors } from "./validate.js";

/**
 * The keystore, laid out like nsc's: directories 0700, files 0600, every write atomic. It holds the operator,
 * the system account, tenant accounts with their role signing keys, and the record of every credential
 * issued (never the seed of a user key, which belongs to its holder).
 *
 *   store.json                       operator, system account, hub URLs to push to
 *   seeds/<public key>.nk            every seed the fabric owns (operator, accounts, role keys)
 *   operator.jwt
 *   accounts/<name>/account.json     the account's state: roles, revocations, JWT issue times
 *   accounts/<name>/account.jwt      the latest signed account JWT
 *   accounts/<name>/users/<key>.json what was issued to each user key
 *   accounts/<name>/tokens/          bootstrap tokens (hashes only), used ones moved to tokens/used/
 *   lock                             held while the store is changed
 */
export const KEYSTORE_VERSION = 1;
export const DEFAULT_LOCK_TIMEOUT_MS = 15_000; // 15 s

const storeFileSchema = z.strictObject({
  version: z.literal(KEYSTORE_VERSION),
  operator: z.strictObject({ name: z.string(), publicKey: z.string() }),
  systemAccount: z.string(),
  hubUrls: z.array(z.string()).default([]),
  /**
   * The region this copy of the operator's keystore serves (issue 13): its name (the hub's JetStream domain),
   * the tenant account linked to other regions, and the peers it dials (each through a link account of its own).
   */
  region: z.strictObject({ name: z.string(), account: z.string(), dials: z.array(z.string()) }).optional(),
});
export type StoreFile = z.infer<typeof storeFileSchema>;

export const roleRecordSchema = z.strictObject({
  key: z.string(),
  template: userPermissionLimitsSchema,
  siteScoped: z.boolean(),
  builtin: z.boolean(),
  /** Earlier keys of this role, rotated out (public keys only). */
  retired: z.array(z.string()).default([]),
});
export type RoleRecord = z.infer<typeof roleRecordSchema>;

export const accountRecordSchema = z.strictObject({
  name: z.string(),
  publicKey: z.string(),
  system: z.boolean(),
  roles: z.record(z.string(), roleRecordSchema),
  revocations: z.record(z.string(), z.number().int()),
  /** `iat` of the latest account JWT; every new one is strictly newer. */
  jwtIat: z.number().int(),
  /** `iat` of the latest account JWT the hub acknowledged (0: never pushed). */
  pushedIat: z.number().int(),
  /** A link account: the region's leaf connection to this peer region is bound to it. */
  link: z.strictObject({ peer: z.string() }).optional(),
});
export type AccountRecord = z.infer<typeof accountRecordSchema>;

export const userRecordSchema = z.strictObject({
  publicKey: z.string(),
  name: z.string(),
  account: z.string(),
  role: z.string(),
  site: z.string().optional(),
  /** device, leaf, service, mqtt, bootstrap or a custom role's name. */
  issuedAt: z.number().int(),
  expiresAt: z.number().int().optional(),
  issuer: z.string(),
  jwt: z.string(),
  /** How many JWTs were issued for this key (renewals included). */
  issueCount: z.number().int(),
  revokedAt: z.number().int().optional(),
  /** Issued in exchange for an identity provider's token: the provider and the token's subject. */
  external: z.strictObject({ provider: z.string(), subject: z.string() }).optional(),
});
export type UserRecord = z.infer<typeof userRecordSchema>;

function parseWith<S extends z.ZodType>(schema: S, path: string): z.infer<S> {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw new KeystoreError("FABRIC_ERR_KEYSTORE_CORRUPT", `keystore file ${path} is unreadable or not JSON`, { cause: err });
  }
  const r = schema.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new KeystoreError("FABRIC_ERR_KEYSTORE_CORRUPT", `keystore file ${path} is invalid at ${issue?.path.join(".") ?? ""}: ${issue?.message ?? ""}`);
  }
  return r.data;
}

export class Keystore {
  readonly dir: string;

  private constructor(dir: string) {
    this.dir = dir;
  }

  /** Opens an existing keystore; KEYSTORE_MISSING if there is none, KEYSTORE_CORRUPT if it is damaged. */
  static open(dir: string): Keystore {
    if (!existsSync(join(dir, "store.json"))) {
      throw new KeystoreError("FABRIC_ERR_KEYSTORE_MISSING", `no keystore at ${dir}: run \`fabric-id init\` first (or set FABRIC_HOME / --store)`);
    }
    const ks = new Keystore(dir);
    ks.storeFile();
    return ks;
  }

  static exists(dir: string): boolean {
    return existsSync(join(dir, "store.json"));
  }

  /** Creates the layout and the store file; the caller (init) fills in accounts. */
  static create(dir: string, store: Omit<StoreFile, "version">): Keystore {
    if (Keystore.exists(dir)) throw new KeystoreError("FABRIC_ERR_KEYSTORE_EXISTS", `a keystore already exists at ${dir}`);
    ensurePrivateDir(dir);
    ensurePrivateDir(join(dir, "seeds"));
    ensurePrivateDir(join(dir, "accounts"));
    const ks = new Keystore(dir);
    ks.writeStoreFile({ version: KEYSTORE_VERSION, ...store });
    return ks;
  }

  storeFile(): StoreFile {
    return parseWith(storeFileSchema, join(this.dir, "store.json"));
  }

  writeStoreFile(store: StoreFile): void {
    writeSecretFile(join(this.dir, "store.json"), `${JSON.stringify(store, null, 2)}\n`);
  }

  // --- seeds ---

  saveSeed(kp: NKeyPair): void {
    writeSecretFile(join(this.dir, "seeds", `${kp.publicKey}.nk`), `${kp.seed}\n`);
  }

  removeSeed(publicKey: string): void {
    rmSync(join(this.dir, "seeds", `${publicKey}.nk`), { force: true });
  }

  keyPair(publicKey: string): NKeyPair {
    const path = join(this.dir, "seeds", `${publicKey}.nk`);
    if (!existsSync(path)) throw new KeystoreError("FABRIC_ERR_KEYSTORE_CORRUPT", `the keystore has no seed for ${publicKey}`);
    const kp = keyPairFromSeed(readFileSync(path, "utf8"));
    if (kp.publicKey !== publicKey) throw new KeystoreError("FABRIC_ERR_KEYSTORE_CORRUPT", `seed file ${path} holds another key`);
    return kp;
  }

  // --- operator ---

  operatorJwt(): string {
    const path = join(this.dir, "operator.jwt");
    if (!existsSync(path)) throw new KeystoreError("FABRIC_ERR_KEYSTORE_CORRUPT", `keystore ${this.dir} has no operator.jwt`);
    return readFileSync(path, "utf8").trim();
  }

  saveOperatorJwt(jwt: string): void {
    writeSecretFile(join(this.dir, "operator.jwt"), `${jwt}\n`);
  }

  // --- accounts ---

  private accountDir(name: string): string {
    return join(this.dir, "accounts", name);
  }

  accountNames(): string[] {
    const dir = join(this.dir, "accounts");
    if (!existsSync(dir)) return [];
    return readdirSync(dir).filter((n) => existsSync(join(dir, n, "account.json"))).sort();
  }

  hasAccount(name: string): boolean {
    return existsSync(join(this.accountDir(name), "account.json"));
  }

  account(name: string): AccountRecord {
    assertToken(name, "account");
    const path = join(this.accountDir(name), "account.json");
    if (!existsSync(path)) throw new KeystoreError("FABRIC_ERR_NOT_FOUND", `no account ${JSON.stringify(name)} in the keystore (have: ${this.accountNames().join(", ")})`);
    return parseWith(accountRecordSchema, path);
  }

  /** Every account; link accounts first, so that pushing them in this order never gives a server a tenant account whose imports it cannot resolve. */
  accounts(): AccountRecord[] {
    const all = this.accountNames().map((n) => this.account(n));
    return [...all.filter((a) => a.link !== undefined), ...all.filter((a) => a.link === undefined)];
  }

  /** The tenant accounts (not the system account, not link accounts). */
  tenantAccounts(): AccountRecord[] {
    return this.accounts().filter((a) => !a.system && a.link === undefined);
  }

  accountByKey(publicKey: string): AccountRecord | undefined {
    return this.accounts().find((a) => a.publicKey === publicKey);
  }

  accountJwt(name: string): string {
    const path = join(this.accountDir(name), "account.jwt");
    if (!existsSync(path)) throw new KeystoreError("FABRIC_ERR_KEYSTORE_CORRUPT", `account ${name} has no account.jwt`);
    return readFileSync(path, "utf8").trim();
  }

  /**
   * Signs and stores a new account JWT from the record, with `iat` strictly newer than the last one (a server
   * keeps the newest it has seen; an older one would be ignored, or worse, un-revoke users).
   */
  saveAccount(record: AccountRecord): { record: AccountRecord; jwt: string } {
    const signed = this.signAccount(record);
    this.storeAccount(signed);
    return signed;
  }

  /** The next account JWT for the record (newer than the last), signed but not stored: see storeAccount. */
  signAccount(record: AccountRecord): { record: AccountRecord; jwt: string } {
    const nowSec = Math.floor(Date.now() / 1000);
    const iat = Math.max(nowSec, record.jwtIat + 1);
    const next: AccountRecord = { ...record, jwtIat: iat };
    const claims: Omit<AccountClaims, "iss" | "jti"> = {
      iat,
      sub: record.publicKey,
      name: record.name,
      aud: "NATS",
      nats: {
        type: "account",
        version: 2,
        limits: record.system || record.link !== undefined ? { ...UNLIMITED_ACCOUNT_LIMITS } : { ...UNLIMITED_JETSTREAM_ACCOUNT_LIMITS },
        signing_keys: Object.entries(record.roles).map(([role, r]) => ({ kind: "user_scope" as const, key: r.key, role, template: r.template })),
        ...(Object.keys(record.revocations).length > 0 ? { revocations: record.revocations } : {}),
        default_permissions: { pub: {}, sub: {} },
        ...this.regionClaims(record),
      },
    };
    const operator = this.keyPair(this.storeFile().operator.publicKey);
    const jwt = encodeJwt<AccountClaims>(accountClaimsSchema.parse({ ...claims, iss: operator.publicKey, jti: "x" }), operator);
    return { record: next, jwt };
  }

  /** Stores an account JWT signAccount made, with its record. */
  storeAccount(signed: { record: AccountRecord; jwt: string }): void {
    const dir = this.accountDir(signed.record.name);
    ensurePrivateDir(dir);
    ensurePrivateDir(join(dir, "users"));
    writeSecretFile(join(dir, "account.jwt"), `${signed.jwt}\n`);
    writeSecretFile(join(dir, "account.json"), `${JSON.stringify(signed.record, null, 2)}\n`);
  }

  /** The exports and imports of a link account or of the region's tenant account (none outside a region). */
  private regionClaims(record: AccountRecord): Partial<RegionAccountClaims> {
    const region = this.storeFile().region;
    if (region === undefined) return {};
    const claims =
      record.link !== undefined
        ? linkAccountClaims(region.name, record.link.peer, this.account(region.account).publicKey)
        : record.name === region.account
          ? tenantRegionClaims(
              region.name,
              region.dials.map((peer) => ({ peer, linkKey: this.account(linkAccountName(peer)).publicKey })),
            )
          : { exports: [], imports: [] };
    return claims.exports.length === 0 && claims.imports.length === 0 ? {} : claims;
  }

  /** Records that the hub holds the account JWT issued at `iat`. */
  markPushed(name: string, iat: number): void {
    const rec = this.account(name);
    if (iat <= rec.pushedIat) return;
    writeSecretFile(join(this.accountDir(name), "account.json"), `${JSON.stringify({ ...rec, pushedIat: iat }, null, 2)}\n`);
  }

  // --- users ---

  users(account: string): UserRecord[] {
    const dir = join(this.accountDir(account), "users");
    if (!existsSync(dir)) return [];
    return readdirSync(dir)
      .filter((f) => f.endsWith(".json"))
      .map((f) => parseWith(userRecordSchema, join(dir, f)));
  }

  user(account: string, publicKey: string): UserRecord | undefined {
    const path = join(this.accountDir(account), "users", `${publicKey}.json`);
    return existsSync(path) ? parseWith(userRecordSchema, path) : undefined;
  }

  saveUser(record: UserRecord): void {
    const dir = join(this.accountDir(record.account), "users");
    ensurePrivateDir(dir);
    writeSecretFile(join(dir, `${record.publicKey}.json`), `${JSON.stringify(record, null, 2)}\n`);
  }

  // --- bootstrap tokens ---

  tokensDir(account: string): string {
    return join(this.accountDir(account), "tokens");
  }

  saveToken(account: string, hash: string, data: unknown): void {
    const dir = this.tokensDir(account);
    ensurePrivateDir(dir);
    ensurePrivateDir(join(dir, "used"));
    writeSecretFile(join(dir, `${hash}.json`), `${JSON.stringify(data)}\n`);
  }

  /** A one-time token's data without spending it: its record, or "used" with the used record, or "unknown". */
  peekToken(account: string, hash: string): { state: "unused" | "used"; data: unknown } | "unknown" {
    const dir = this.tokensDir(account);
    for (const [state, path] of [["unused", join(dir, `${hash}.json`)], ["used", join(dir, "used", `${hash}.json`)]] as const) {
      try {
        return { state, data: JSON.parse(readFileSync(path, "utf8")) as unknown };
      } catch {
        // not in this state
      }
    }
    return "unknown";
  }

  /**
   * Consumes a one-time token: an atomic rename into used/, so of two concurrent consumers exactly one wins;
   * the used record then says who spent it (`usedBy`). Returns its data, or "used" / "unknown".
   */
  consumeToken(account: string, hash: string, usedBy?: Readonly<Record<string, unknown>>): unknown {
    const dir = this.tokensDir(account);
    const from = join(dir, `${hash}.json`);
    const to = join(dir, "used", `${hash}.json`);
    try {
      renameSync(from, to);
    } catch {
      return existsSync(to) ? "used" : "unknown";
    }
    const data = JSON.parse(readFileSync(to, "utf8")) as unknown;
    if (usedBy !== undefined && typeof data === "object" && data !== null) writeSecretFile(to, `${JSON.stringify({ ...data, usedBy })}\n`);
    return data;
  }

  /** Gives a consumed token back (what it was spent for could not be completed). */
  restoreToken(account: string, hash: string, data: unknown): void {
    const dir = this.tokensDir(account);
    writeSecretFile(join(dir, `${hash}.json`), `${JSON.stringify(data)}\n`);
    rmSync(join(dir, "used", `${hash}.json`), { force: true });
  }

  // --- trust ---

  /** Trust anchors for validateUserJwt from this keystore's operator and account JWTs. */
  trustAnchors(): TrustAnchors {
    const operatorKey = this.storeFile().operator.publicKey;
    return {
      operatorKeys: [operatorKey],
      accountJwt: (pub) => {
        const acc = this.accountByKey(pub);
        return acc === undefined ? undefined : this.accountJwt(acc.name);
      },
    };
  }

  // --- locking ---

  /**
   * Runs `fn` holding the keystore lock (a lock file created with O_EXCL that names the holder's pid; a lock
   * whose holder died is taken over). The CLI and the identity service of a running hub both change the store.
   */
  async withLock<T>(fn: () => T | Promise<T>, timeoutMs = DEFAULT_LOCK_TIMEOUT_MS): Promise<T> {
    const path = join(this.dir, "lock");
    let release: () => void;
    try {
      release = await acquireLockFile(path, timeoutMs);
    } catch (err) {
      throw new KeystoreError("FABRIC_ERR_KEYSTORE_LOCKED", `the keystore ${this.dir} is locked by another process`, { cause: err });
    }
    try {
      return await fn();
    } finally {
      release();
    }
  }
}

