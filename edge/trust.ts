import { existsSync } from "node:fs";
import { join } from "node:path";
import type { NatsConnection } from "@nats-io/transport-node";
import { errorMessage, readJsonFile, writeSecretFile, type Logger } from "../fabric/core/index.js";
import { connectWithCreds, peekJwt, pushClaims, siteTrustSchema, type SiteTrust } from "../identity/index.js";
import { EdgeError } from "./errors.js";

/** The trust a site keeps between runs (public JWTs only; the sync credential is never kept). */
export type KeptTrust = Omit<SiteTrust, "syncCreds" | "agentCreds">;
const keptTrustSchema = siteTrustSchema.omit({ syncCreds: true, agentCreds: true });

export const trustPath = (dataDir: string): string => join(dataDir, "trust.json");
export const agentCredsPath = (dataDir: string): string => join(dataDir, "agent.creds");

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
