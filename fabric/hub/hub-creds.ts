import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { errorMessage, ensurePrivateDir, writeSecretFile, type Logger } from "../core/index.js";
import { issueUser, parseCreds, SYSTEM_ACCOUNT_NAME, validateUserJwt, type Keystore, type TenantServerOptions } from "../../identity/index.js";

/** The credentials the hub's own components connect with, by purpose. */
export const INTERNAL_CREDENTIALS = {
  hub: { role: "hub", name: "fabric-hub" },
  ingress: { role: "ingress", name: "fabric-ingress" },
  watcher: { role: "watcher", name: "fabric-watcher" },
} as const;
export type InternalCredential = keyof typeof INTERNAL_CREDENTIALS;

/** Where `fabric up` keeps an internal credential of an account. */
export function hubCredsPath(dataDir: string, account: string, purpose: InternalCredential = "hub"): string {
  return join(dataDir, "creds", purpose === "hub" ? `${account}.creds` : `${account}-${purpose}.creds`);
}

/**
 * An internal credential of the hub (its bootstrap connection, the ingress, the account watcher), kept in
 * `<data>/creds/` (0600) and re-issued when it no longer validates (its role key was rotated, or it was
 * revoked).
 */
export async function hubCreds(ks: Keystore, dataDir: string, account: string, logger: Logger, purpose: InternalCredential = "hub"): Promise<string> {
  const path = hubCredsPath(dataDir, account, purpose);
  ensurePrivateDir(dirname(path));
  if (existsSync(path)) {
    const text = readFileSync(path, "utf8");
    try {
      validateUserJwt(parseCreds(text).jwt, ks.trustAnchors());
      return text;
    } catch (err) {
      logger.info({ account, purpose, reason: errorMessage(err) }, "internal credential no longer valid; issuing a new one");
    }
  }
  const { role, name } = INTERNAL_CREDENTIALS[purpose];
  const issued = await ks.withLock(() => issueUser(ks, { account, role, name }));
  if (issued.creds === undefined) throw new Error("internal credential issued without a seed");
  writeSecretFile(path, issued.creds);
  return issued.creds;
}

/**
 * What a server of the fabric's own (the MQTT ingress with `ingress`, the gRPC gateway with `hub`) needs to
 * serve `account` on this hub: its credential, the account watcher's, and the trust anchors.
 */
export async function tenantServerOptions(ks: Keystore, dataDir: string, account: string, servers: string[], logger: Logger, purpose: "hub" | "ingress"): Promise<TenantServerOptions> {
  return {
    servers,
    creds: await hubCreds(ks, dataDir, account, logger, purpose),
    watcherCreds: await hubCreds(ks, dataDir, SYSTEM_ACCOUNT_NAME, logger, "watcher"),
    operatorKeys: [ks.storeFile().operator.publicKey],
    accountKey: ks.account(account).publicKey,
  };
}
