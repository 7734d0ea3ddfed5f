import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { errorMessage, ensurePrivateDir, writeSecretFile, type Logger } from "../core/index.js";
import { issueUser, parseCreds, validateUserJwt, type Keystore } from "../../identity/index.js";

export const HUB_USER_NAME = "fabric-hub";

/**
 * The hub's own credential for a tenant account (role `hub`), kept in `<data>/creds/<account>.creds` (0600)
 * and re-issued when it no longer validates (its role key was rotated, or it was revoked).
 */
export async function hubCreds(ks: Keystore, dataDir: string, account: string, logger: Logger): Promise<string> {
  const path = hubCredsPath(dataDir, account);
  ensurePrivateDir(dirname(path));
  if (existsSync(path)) {
    const text = readFileSync(path, "utf8");
    try {
      validateUserJwt(parseCreds(text).jwt, ks.trustAnchors());
      return text;
    } catch (err) {
      logger.info({ account, reason: errorMessage(err) }, "hub credential no longer valid; issuing a new one");
    }
  }
  const issued = await ks.withLock(() => issueUser(ks, { account, role: "hub", name: HUB_USER_NAME }));
  if (issued.creds === undefined) throw new Error("hub credential issued without a seed");
  writeSecretFile(path, issued.creds);
  return issued.creds;
}

/** Where `fabric up` keeps the hub's credentials. */
export function hubCredsPath(dataDir: string, account: string): string {
  return join(dataDir, "creds", `${account}.creds`);
}
