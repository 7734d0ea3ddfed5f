import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { NatsConnection } from "@nats-io/transport-node";
import { errorMessage, readJsonFile, writeSecretFile, type Logger } from "../fabric/core/index.js";
import { connectWithCreds, peekJwt, pushClaims, siteTrustSchema, type SiteTrust } from "../identity/index.js";
import { EdgeError } from "./errors.js";

/** The trust a site keeps between runs (public JWTs only; credentials are kept apart, the sync one never). */
export type KeptTrust = Omit<SiteTrust, "syncCreds" | "agentCreds" | "ingressCreds" | "watcherCreds">;
const keptTrustSchema = siteTrustSchema.omit({ syncCreds: true, agentCreds: true, ingressCreds: true, watcherCreds: true });

export const trustPath = (dataDir: string): string => join(dataDir, "trust.json");

/** The site's own long-lived credentials (minted by the hub for its leaf, loopback only), kept 0600 in its data. */
export interface SiteCredentials {
  agent?: string;
  ingress?: string;
  watcher?: string;
}
const CREDS_FILES: Readonly<Record<keyof SiteCredentials, string>> = { agent: "agent.creds", ingress: "ingress.creds", watcher: "watcher.creds" };
export const siteCredsPath = (dataDir: string, which: keyof SiteCredentials): string => join(dataDir, CREDS_FILES[which]);

export function loadSiteCredentials(dataDir: string): SiteCredentials {
  const out: SiteCredentials = {};
  for (const which of Object.keys(CREDS_FILES) as (keyof SiteCredentials)[]) {
    const path = siteCredsPath(dataDir, which);
    if (existsSync(path)) out[which] = readFileSync(path, "utf8");
  }
  return out;
}

/** Keeps the credentials a trust fetch brought (0600); returns all the site has now. */
export function keepSiteCredentials(dataDir: string, held: SiteCredentials, fetched: SiteTrust): SiteCredentials {
  const got: SiteCredentials = { agent: fetched.agentCreds, ingress: fetched.ingressCreds, watcher: fetched.watcherCreds };
  const out = { ...held };
  for (const which of Object.keys(CREDS_FILES) as (keyof SiteCredentials)[]) {
    const creds = got[which];
    if (creds === undefined) continue;
    writeSecretFile(siteCredsPath(dataDir, which), creds);
    out[which] = creds;
  }
  return out;
}

const iatOf = (jwt: string): number => {
  const iat = peekJwt(jwt)["iat"];
  return typeof iat === "number" ? iat : 0;
};

/** The trust kept from an earlier run, or undefined (a damaged file is an error: it names the file). */
export function loadTrust(dataDir: string): KeptTrust | undefined {
  const path = trustPath(dataDir);
  if (!existsSync(path)) return undefined;
  const r = keptTrustSchema.safeParse(readJsonFile(path));
  if (!r.success) throw new EdgeError("FABRIC_ERR_EDGE_STATE", `${path} is damaged (${r.error.issues[0]?.message ?? "invalid"}): remove it and start again with the hub reachable`);
  return r.data;
}

export function saveTrust(dataDir: string, trust: KeptTrust): void {
  writeSecretFile(trustPath(dataDir), `${JSON.stringify(trust, null, 2)}\n`);
}

/**
 * The newer of two trusts, account by account (by the JWTs' issue time): a fetched JWT never replaces a newer
 * one held (an older account JWT would un-revoke users). Returns the merged trust and the JWTs that changed.
 */
export function mergeTrust(held: KeptTrust | undefined, fetched: KeptTrust): { trust: KeptTrust; changed: string[] } {
  if (held === undefined || held.operatorJwt !== fetched.operatorJwt) {
    // only the public part is kept (never a credential that came with it)
    const { operatorJwt, systemAccount, account, accounts } = fetched;
    return { trust: { operatorJwt, systemAccount, account, accounts }, changed: Object.values(accounts) };
  }
  const accounts = { ...held.accounts };
  const changed: string[] = [];
  for (const [key, jwt] of Object.entries(fetched.accounts)) {
    const have = accounts[key];
    if (have !== undefined && iatOf(have) >= iatOf(jwt)) continue;
    accounts[key] = jwt;
    changed.push(jwt);
  }
  return { trust: { ...held, accounts }, changed };
}

/**
 * Applies account JWTs to the site's own server at once (its full resolver stores them and cuts off revoked
 * users), with the short-lived loopback-only sync credential the hub handed out.
 */
export async function applyToServer(url: string, syncCreds: string, jwts: readonly string[], logger: Logger): Promise<void> {
  if (jwts.length === 0) return;
  let nc: NatsConnection | undefined;
  try {
    nc = await connectWithCreds(syncCreds, { servers: url, name: "fabric-edge trust sync" });
    for (const jwt of jwts) {
      const r = await pushClaims(nc, jwt, 1);
      const bad = r.find((x) => !x.ok);
      if (r.length === 0 || bad !== undefined) throw new EdgeError("FABRIC_ERR_EDGE_TRUST", `the site's server did not take an account JWT: ${bad?.message ?? "no answer"}`);
    }
    logger.info({ accounts: jwts.length }, "account JWTs applied to the site's server");
  } catch (err) {
    throw err instanceof EdgeError ? err : new EdgeError("FABRIC_ERR_EDGE_TRUST", `could not apply account JWTs to the site's server: ${errorMessage(err)}`, { cause: err });
  } finally {
    await nc?.close().catch(() => undefined);
  }
}
