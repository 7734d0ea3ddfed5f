import { assertToken } from "../fabric/core/index.js";
import { operatorClaimsSchema, type OperatorClaims } from "./claims.js";
import { KeystoreError } from "./errors.js";
import { encodeJwt } from "./jwt.js";
import { Keystore, type AccountRecord, type RoleRecord } from "./keystore.js";
import { createKeyPair } from "./nkeys.js";
import { BUILTIN_ROLES, BUILTIN_ROLE_TEMPLATES, SITE_ROLES } from "./roles.js";

export const DEFAULT_OPERATOR_NAME = "fabric";
export const DEFAULT_ACCOUNT_NAME = "fleet";
export const SYSTEM_ACCOUNT_NAME = "sys";

const NO_LIMITS = { subs: -1, data: -1, payload: -1 } as const;

/** Roles of the system account, for the fabric's own processes. */
export const SYSTEM_ROLE_TEMPLATES: Readonly<Record<"admin" | "watcher" | "edge-sync" | "edge-watcher", RoleRecord["template"]>> = {
  /** Two-minute admin users: push account JWTs, ask servers for their state, kick connections. */
  admin: {
    pub: { allow: ["$SYS.REQ.CLAIMS.UPDATE", "$SYS.REQ.SERVER.PING", "$SYS.REQ.SERVER.PING.*", "$SYS.REQ.SERVER.*.KICK"] },
    sub: { allow: ["_INBOX.>"] },
    ...NO_LIMITS,
  },
  /** The ingress, gateway and hub: see every account JWT pushed, look one up, see clients connect and go. */
  watcher: {
    pub: { allow: ["$SYS.REQ.ACCOUNT.*.CLAIMS.LOOKUP"] },
    // and the connect and disconnect advisories, for the device registry's live state
    sub: { allow: ["$SYS.REQ.CLAIMS.UPDATE", "$SYS.REQ.ACCOUNT.*.CLAIMS.UPDATE", "$SYS.ACCOUNT.*.CONNECT", "$SYS.ACCOUNT.*.DISCONNECT", "_INBOX.>"] },
    ...NO_LIMITS,
  },
  /**
   * An edge agent's short-lived users (minted by the identity service for a site's leaf): they push the account
   * JWTs the site just fetched into the site's own server, from the site's own machine (loopback only), nothing else.
   */
  "edge-sync": {
    pub: { allow: ["$SYS.REQ.CLAIMS.UPDATE"] },
    sub: { allow: ["_INBOX.>"] },
    src: ["127.0.0.1/32", "::1/128"],
    ...NO_LIMITS,
  },
  /** A site's MQTT ingress watching the account JWTs its site's server is given (loopback only). */
  "edge-watcher": {
    pub: { allow: ["$SYS.REQ.ACCOUNT.*.CLAIMS.LOOKUP"] },
    sub: { allow: ["$SYS.REQ.CLAIMS.UPDATE", "$SYS.REQ.ACCOUNT.*.CLAIMS.UPDATE", "_INBOX.>"] },
    src: ["127.0.0.1/32", "::1/128"],
    ...NO_LIMITS,
  },
};

/**
 * Brings a keystore made by an older version up to date: adds the built-in roles it lacks and gives the
 * built-in roles it has the current built-in templates (system and tenant accounts). Returns the accounts that
 * changed (to push).
 */
export function upgradeKeystore(ks: Keystore): string[] {
  const changed: string[] = [];
  for (const acc of ks.accounts().filter((a) => a.link === undefined)) {
    const want: Readonly<Record<string, RoleRecord["template"]>> = acc.system ? SYSTEM_ROLE_TEMPLATES : BUILTIN_ROLE_TEMPLATES;
    const roles = { ...acc.roles };
    let dirty = false;
    for (const [name, template] of Object.entries(want)) {
      const have = roles[name];
      if (have === undefined) roles[name] = newRole(ks, template, !acc.system && SITE_ROLES.has(name), true);
      else if (have.builtin && canonicalJson(have.template) !== canonicalJson(template)) roles[name] = { ...have, template };
      else continue;
      dirty = true;
    }
    if (!dirty) continue;
    ks.saveAccount({ ...acc, roles });
    changed.push(acc.name);
  }
  return changed;
}

/** JSON with object keys sorted, for comparing values whatever their key order. */
function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) =>
    v !== null && typeof v === "object" && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => a.localeCompare(b))) : v,
  );
}

export interface InitOptions {
  operator?: string;
  accounts?: readonly string[];
}

export interface InitResult {
  keystore: Keystore;
  operatorPublicKey: string;
  systemAccount: string;
  accounts: { name: string; publicKey: string }[];
}

/** A role record with a fresh signing key, its seed saved in the store. */
export function newRole(ks: Keystore, template: RoleRecord["template"], siteScoped: boolean, builtin: boolean): RoleRecord {
  const kp = createKeyPair("account");
  ks.saveSeed(kp);
  return { key: kp.publicKey, template, siteScoped, builtin, retired: [] };
}

/** Creates a tenant account with the built-in roles, signs its JWT; the caller pushes it. */
export function createAccount(ks: Keystore, name: string): AccountRecord {
  assertToken(name, "account");
  if (name === SYSTEM_ACCOUNT_NAME) throw new KeystoreError("FABRIC_ERR_KEYSTORE_EXISTS", `account name ${name} is reserved for the system account`);
  if (ks.hasAccount(name)) throw new KeystoreError("FABRIC_ERR_KEYSTORE_EXISTS", `account ${name} already exists`);
  const kp = createKeyPair("account");
  ks.saveSeed(kp);
  const roles: Record<string, RoleRecord> = {};
  for (const role of BUILTIN_ROLES) roles[role] = newRole(ks, BUILTIN_ROLE_TEMPLATES[role], SITE_ROLES.has(role), true);
  return ks.saveAccount({ name, publicKey: kp.publicKey, system: false, roles, revocations: {}, jwtIat: 0, pushedIat: 0 }).record;
}

/**
 * `fabric-id init`: an operator, the system account (with an `admin` role for the fabric's own short-lived
 * system users) and tenant accounts with the built-in roles.
 */
export function initKeystore(dir: string, options: InitOptions = {}): InitResult {
  const operatorName = options.operator ?? DEFAULT_OPERATOR_NAME;
  assertToken(operatorName, "operator");
  const accountNames = options.accounts !== undefined && options.accounts.length > 0 ? [...options.accounts] : [DEFAULT_ACCOUNT_NAME];
  for (const a of accountNames) assertToken(a, "account");
  if (new Set(accountNames).size !== accountNames.length) throw new KeystoreError("FABRIC_ERR_KEYSTORE_EXISTS", "an account name is given twice");

  const operator = createKeyPair("operator");
  const system = createKeyPair("account");
  const ks = Keystore.create(dir, { operator: { name: operatorName, publicKey: operator.publicKey }, systemAccount: system.publicKey, hubUrls: [] });
  ks.saveSeed(operator);
  ks.saveSeed(system);
  const opClaims: Omit<OperatorClaims, "iss" | "jti"> = {
    iat: Math.floor(Date.now() / 1000),
    sub: operator.publicKey,
    name: operatorName,
    nats: { type: "operator", version: 2, system_account: system.publicKey },
  };
  ks.saveOperatorJwt(encodeJwt<OperatorClaims>(operatorClaimsSchema.parse({ ...opClaims, iss: operator.publicKey, jti: "x" }), operator));

  const roles: Record<string, RoleRecord> = {};
  for (const [role, template] of Object.entries(SYSTEM_ROLE_TEMPLATES)) roles[role] = newRole(ks, template, false, true);
  ks.saveAccount({ name: SYSTEM_ACCOUNT_NAME, publicKey: system.publicKey, system: true, roles, revocations: {}, jwtIat: 0, pushedIat: 0 });
  const accounts = accountNames.map((n) => createAccount(ks, n));
  return {
    keystore: ks,
    operatorPublicKey: operator.publicKey,
    systemAccount: system.publicKey,
    accounts: accounts.map((a) => ({ name: a.name, publicKey: a.publicKey })),
  };
}
