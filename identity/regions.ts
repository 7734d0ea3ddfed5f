import { assertToken, InvalidInputError } from "../fabric/core/index.js";
import { userClaimsSchema, type AccountClaims, type UserClaims } from "./claims.js";
import { formatCreds } from "./creds.js";
import { KeystoreError } from "./errors.js";
import { encodeJwt } from "./jwt.js";
import type { Keystore } from "./keystore.js";
import { createKeyPair } from "./nkeys.js";
import { linkAccountName, linkUserPermissions } from "./region-claims.js";

/** The longest region name: link account names (`link-<peer>`) and stream names must stay short. */
export const MAX_REGION_NAME_LENGTH = 24;
/** The role recorded for link credentials (they are signed by the tenant account's own key, not a role key). */
export const REGION_LINK_ROLE = "region-link";

export function assertRegionName(name: string, what = "region"): string {
  assertToken(name, what);
  if (name.length > MAX_REGION_NAME_LENGTH) throw new InvalidInputError(`${what} ${JSON.stringify(name)} is longer than ${MAX_REGION_NAME_LENGTH} characters`, { fields: { [what]: name } });
  if (name === "hub") throw new InvalidInputError(`${what} "hub" is reserved (the JetStream domain of a hub that is no region)`, { fields: { [what]: name } });
  return name;
}

/**
 * Makes this copy of the operator's keystore serve `region` (the tenant account `account` is the one linked to
 * other regions). A keystore serves one region: another name is refused. Call under the keystore lock.
 */
export function setKeystoreRegion(ks: Keystore, region: string, account: string): void {
  assertRegionName(region);
  const store = ks.storeFile();
  if (store.region !== undefined) {
    if (store.region.name !== region) {
      throw new KeystoreError(
        "FABRIC_ERR_KEYSTORE_EXISTS",
        `keystore ${ks.dir} serves region ${store.region.name}, not ${region}: every region runs on its own copy of the operator's keystore`,
      );
    }
    return;
  }
  if (ks.account(account).system) throw new InvalidInputError(`account ${account} is the system account; regions link a tenant account`);
  ks.writeStoreFile({ ...store, region: { name: region, account, dials: [] } });
}

/**
 * Sets the peers this region dials: a link account for each new one, and the tenant account's JWT re-signed with
 * the mounts of exactly these links. Returns the accounts whose JWTs changed, link accounts first (push in this
 * order). Call under the keystore lock.
 */
export function setDialedLinks(ks: Keystore, peers: readonly string[]): string[] {
  const store = ks.storeFile();
  const region = store.region;
  if (region === undefined) throw new InvalidInputError("this keystore serves no region: start the hub with --region first");
  const want = [...new Set(peers.map((p) => assertRegionName(p, "peer")))].sort();
  if (want.includes(region.name)) throw new InvalidInputError(`region ${region.name} cannot link to itself`);
  const changed: string[] = [];
  const fresh = want.filter((p) => !ks.hasAccount(linkAccountName(p)));
  // the store names the dials first: the link accounts' claims and the tenant's imports are made from it
  ks.writeStoreFile({ ...store, region: { ...region, dials: want } });
  for (const peer of fresh) {
    const kp = createKeyPair("account");
    ks.saveSeed(kp);
    ks.saveAccount({ name: linkAccountName(peer), publicKey: kp.publicKey, system: false, roles: {}, revocations: {}, jwtIat: 0, pushedIat: 0, link: { peer } });
    changed.push(linkAccountName(peer));
  }
  if (fresh.length > 0 || want.join() !== region.dials.join()) {
    ks.saveAccount(ks.account(region.account));
    changed.push(region.account);
  }
  return changed;
}

/**
 * Issues the credential this region dials `peer` with: a user of the tenant account (the peer binds the leaf
 * connection to it), for leaf connections only, allowed exactly the link's subjects. Recorded in the keystore
 * under role `region-link`, so `fabric-id revoke` finds it by name. Returns the `.creds` text (write it 0600).
 */
export function issueLinkCreds(ks: Keystore, peer: string): { creds: string; publicKey: string; name: string } {
  const region = ks.storeFile().region;
  if (region === undefined) throw new InvalidInputError("this keystore serves no region");
  const account = ks.account(region.account);
  const signer = ks.keyPair(account.publicKey);
  const user = createKeyPair("user");
  const iat = Math.floor(Date.now() / 1000);
  const name = `region-link-${region.name}-${peer}`;
  const claims = userClaimsSchema.parse({
    jti: "x",
    iss: signer.publicKey,
    iat,
    sub: user.publicKey,
    name,
    aud: "NATS",
    nats: { type: "user", version: 2, tags: [`role:${REGION_LINK_ROLE}`, `region:${region.name}`, `peer:${peer}`], ...linkUserPermissions(region.name, peer) },
  });
  const jwt = encodeJwt<UserClaims>(claims, signer);
  ks.saveUser({ publicKey: user.publicKey, name, account: account.name, role: REGION_LINK_ROLE, issuedAt: iat, issuer: signer.publicKey, jwt, issueCount: 1 });
  return { creds: formatCreds(jwt, user.seed), publicKey: user.publicKey, name };
}

/** Revocations of a peer region's account JWT this region lacked: its account JWT signed again with them. */
export interface AdoptedRevocations {
  account: string;
  /** The account's new JWT, signed, not stored yet: push it, then `store()`. */
  jwt: string;
  /** Stores the JWT and its record (pushed to every server: marked so), and marks the users revoked in the keystore. */
  store(pushed: boolean): void;
}

/**
 * Takes in the revocations of an account JWT another region pushed (already checked against the operator): the
 * account's record here gains every revocation it lacks and its JWT is signed again, newer than both. Undefined
 * when this region knew all of it (which ends the relay: a region never sends back what it has), and for
 * accounts this keystore lacks and link accounts. Signing and storing are apart so that the caller can push first
 * (the disk's fsyncs then cost the revocation nothing); call both under the keystore lock.
 */
export function adoptRevocations(ks: Keystore, claims: AccountClaims): AdoptedRevocations | undefined {
  const account = ks.accountByKey(claims.sub);
  if (account === undefined || account.link !== undefined) return undefined;
  const revocations = { ...account.revocations };
  const added: string[] = [];
  for (const [key, at] of Object.entries(claims.nats.revocations ?? {})) {
    if ((revocations[key] ?? -1) >= at) continue;
    revocations[key] = at;
    added.push(key);
  }
  if (added.length === 0) return undefined;
  const signed = ks.signAccount({ ...account, revocations, jwtIat: Math.max(account.jwtIat, claims.iat) });
  return {
    account: account.name,
    jwt: signed.jwt,
    store: (pushed) => {
      ks.storeAccount(pushed ? { ...signed, record: { ...signed.record, pushedIat: signed.record.jwtIat } } : signed);
      for (const key of added) {
        const u = ks.user(account.name, key);
        if (u !== undefined && u.revokedAt === undefined) ks.saveUser({ ...u, revokedAt: revocations[key] ?? 0 });
      }
    },
  };
}
