import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import type { Msg, NatsConnection, Subscription } from "@nats-io/transport-node";
import type { z } from "zod";
import { errorMessage, isFabricError, subjects, type Logger } from "../fabric/core/index.js";
import { ProvisionError } from "./errors.js";
import { hashToken, issueUser, type BootstrapTokenData } from "./issue.js";
import type { Keystore } from "./keystore.js";
import { isPublicKey } from "./nkeys.js";
import { provisionRequestSchema, renewRequestSchema, siteTrustRequestSchema, type CredentialReply, type SiteTrust } from "./provision-protocol.js";
import { SYSTEM_ACCOUNT_NAME } from "./init.js";
import { validateUserJwt, verifyProof, type ValidatedUser } from "./validate.js";

export const NONCE_TTL_MS = 60_000; // 1 min
export const DEFAULT_DEVICE_EXPIRY_SEC = 30 * 86_400; // 30 d
export const IDENTITY_QUEUE_GROUP = "fabric-identity";
/** How long the sync credential handed to a site lives: long enough to push, useless later. */
export const SITE_SYNC_CREDS_TTL_SEC = 300; // 5 min
/** Roles that may renew through the service. */
const RENEWABLE_ROLES: ReadonlySet<string> = new Set(["device", "mqtt"]);
/** Roles that may ask for a site's trust. */
const SITE_ROLES_ALLOWED: ReadonlySet<string> = new Set(["leaf"]);

export interface IdentityServiceOptions {
  keystore: Keystore;
  /** A connection into the tenant account, as a user allowed to subscribe to `$FABRIC.id.>`. */
  connection: NatsConnection;
  account: string;
  logger: Logger;
  /** Lifetime of the device credentials it issues; default 30 days. */
  deviceExpirySec?: number;
  /** Called after an issue, for the hub to push or log. */
  onIssued?: (kind: "provision" | "renew", name: string, publicKey: string) => void;
}

export interface IdentityService {
  stop(): Promise<void>;
}

/**
 * Nonces are stateless (`expiry.random.hmac`) with an HMAC key derived from the account's seed, so every
 * instance of the service serving the account accepts every other's nonces.
 */
function nonceKey(ks: Keystore, account: string): Buffer {
  const seed = ks.keyPair(ks.account(account).publicKey).seed;
  return createHmac("sha256", "fabric-identity-nonce").update(seed).digest();
}

function makeNonce(key: Buffer): string {
  const body = `${Date.now() + NONCE_TTL_MS}.${randomBytes(16).toString("base64url")}`;
  return `${body}.${createHmac("sha256", key).update(body).digest("base64url")}`;
}

function checkNonce(key: Buffer, nonce: string): void {
  const i = nonce.lastIndexOf(".");
  const body = nonce.slice(0, Math.max(0, i));
  const mac = Buffer.from(nonce.slice(i + 1), "base64url");
  const want = createHmac("sha256", key).update(body).digest();
  if (i < 0 || mac.length !== want.length || !timingSafeEqual(mac, want)) throw new ProvisionError("FABRIC_ERR_NONCE_INVALID", "nonce was not issued by this service");
  if (Number(body.split(".")[0]) < Date.now()) throw new ProvisionError("FABRIC_ERR_NONCE_INVALID", "nonce has expired: ask for a new one");
}

function parse<S extends z.ZodType>(schema: S, msg: Msg): z.infer<S> {
  let raw: unknown;
  try {
    raw = msg.json();
  } catch {
    throw new ProvisionError("FABRIC_ERR_PROVISION", "request is not JSON");
  }
  const r = schema.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new ProvisionError("FABRIC_ERR_PROVISION", `request field ${issue?.path.join(".") ?? "?"} is invalid: ${issue?.message ?? ""}`);
  }
  return r.data;
}

/** The identity service of one tenant account: nonces, provisioning with one-time tokens, renewal. */
export function startIdentityService(options: IdentityServiceOptions): IdentityService {
  const { keystore: ks, connection: nc, account, logger } = options;
  const log = logger.child({ service: "identity", account });
  const key = nonceKey(ks, account);
  const expirySec = options.deviceExpirySec ?? DEFAULT_DEVICE_EXPIRY_SEC;

  const provision = async (msg: Msg): Promise<CredentialReply> => {
    const req = parse(provisionRequestSchema, msg);
    checkNonce(key, req.nonce);
    if (!isPublicKey(req.publicKey, "user")) throw new ProvisionError("FABRIC_ERR_PROOF_INVALID", "publicKey is not a user public key (U…)");
    if (!verifyProof(req.publicKey, req.nonce, req.signature)) throw new ProvisionError("FABRIC_ERR_PROOF_INVALID", "signature over the nonce does not verify with publicKey");
    return ks.withLock(() => {
      const acc = ks.account(account);
      if (acc.revocations[req.publicKey] !== undefined) throw new ProvisionError("FABRIC_ERR_KEY_REVOKED", "this key has been revoked");
      const tokenHash = hashToken(req.token);
      const data = ks.consumeToken(account, tokenHash);
      if (data === "used") throw new ProvisionError("FABRIC_ERR_TOKEN_USED", "bootstrap token has already been used");
      if (data === "unknown" || typeof data !== "object" || data === null) throw new ProvisionError("FABRIC_ERR_TOKEN_INVALID", "bootstrap token is unknown");
      const token = data as BootstrapTokenData;
      if (token.expiresAt * 1000 < Date.now()) throw new ProvisionError("FABRIC_ERR_TOKEN_EXPIRED", "bootstrap token has expired");
      const now = Math.floor(Date.now() / 1000);
      const taken = ks
        .users(account)
        .find((u) => u.role === "device" && u.name === req.name && u.site === token.site && u.publicKey !== req.publicKey && u.revokedAt === undefined && (u.expiresAt === undefined || u.expiresAt > now));
      if (taken !== undefined) throw new ProvisionError("FABRIC_ERR_PROVISION", `device name ${req.name} is already held by another key at site ${token.site}`);
      const issued = issueUser(ks, { account, role: "device", name: req.name, site: token.site, publicKey: req.publicKey, expiresInSec: expirySec });
      log.info({ device: req.name, site: token.site, publicKey: req.publicKey }, "device provisioned");
      options.onIssued?.("provision", req.name, req.publicKey);
      return { jwt: issued.jwt, ...(issued.record.expiresAt === undefined ? {} : { expiresAt: issued.record.expiresAt }) };
    });
  };

  /** The caller of a signed request (its JWT, a nonce of ours and its signature over it), if its role may ask. */
  const signedCaller = (req: { jwt: string; nonce: string; signature: string }, roles: ReadonlySet<string>, what: string): ValidatedUser => {
    checkNonce(key, req.nonce);
    let user;
    try {
      user = validateUserJwt(req.jwt, ks.trustAnchors());
    } catch (err) {
      if (isFabricError(err) && err.code === "FABRIC_ERR_CREDENTIAL_REVOKED") throw new ProvisionError("FABRIC_ERR_KEY_REVOKED", err.message, { cause: err });
      throw new ProvisionError("FABRIC_ERR_PROOF_INVALID", `credential refused: ${errorMessage(err)}`, { cause: err });
    }
    if (user.accountName !== account) throw new ProvisionError("FABRIC_ERR_PROOF_INVALID", "credential belongs to another account");
    if (user.role === undefined || !roles.has(user.role)) throw new ProvisionError("FABRIC_ERR_PROOF_INVALID", `role ${user.role ?? "(none)"} cannot ${what}`);
    if (!verifyProof(user.publicKey, req.nonce, req.signature)) throw new ProvisionError("FABRIC_ERR_PROOF_INVALID", "signature over the nonce does not verify with the credential's key");
    return user;
  };

  const renew = async (msg: Msg): Promise<CredentialReply> => {
    const user = signedCaller(parse(renewRequestSchema, msg), RENEWABLE_ROLES, "renew here");
    const life = user.claims.exp === undefined ? expirySec : Math.max(60, user.claims.exp - user.claims.iat);
    return ks.withLock(() => {
      if (ks.account(account).revocations[user.publicKey] !== undefined) throw new ProvisionError("FABRIC_ERR_KEY_REVOKED", "this key has been revoked");
      const issued = issueUser(ks, { account, role: user.role ?? "device", name: user.name, site: user.site, publicKey: user.publicKey, expiresInSec: life });
      log.info({ user: user.name, site: user.site, publicKey: user.publicKey }, "credential renewed");
      options.onIssued?.("renew", user.name, user.publicKey);
      return { jwt: issued.jwt, ...(issued.record.expiresAt === undefined ? {} : { expiresAt: issued.record.expiresAt }) };
    });
  };

  /** A site's leaf: the operator and account JWTs its server trusts offline, and a short-lived sync credential. */
  const site = async (msg: Msg): Promise<SiteTrust> => {
    const req = parse(siteTrustRequestSchema, msg);
    const user = signedCaller(req, SITE_ROLES_ALLOWED, "ask for a site's trust");
    if (user.site === undefined) throw new ProvisionError("FABRIC_ERR_PROOF_INVALID", "the leaf credential carries no site");
    const system = ks.account(SYSTEM_ACCOUNT_NAME);
    const tenant = ks.account(account);
    const sync = issueUser(ks, { account: SYSTEM_ACCOUNT_NAME, role: "edge-sync", name: `edge-sync-${user.site}`, expiresInSec: SITE_SYNC_CREDS_TTL_SEC, ephemeral: true });
    if (sync.creds === undefined) throw new ProvisionError("FABRIC_ERR_PROVISION", "sync credential was minted without a seed");
    const mint = async (want: boolean, acc: string, role: string, name: string, site?: string): Promise<string | undefined> =>
      want ? (await ks.withLock(() => issueUser(ks, { account: acc, role, name, site }))).creds : undefined;
    const agent = await mint(req.agent, account, "edge-agent", `edge-agent-${user.site}`, user.site);
    const ingress = await mint(req.ingress, account, "edge-ingress", `edge-ingress-${user.site}`, user.site);
    const watcher = await mint(req.ingress, SYSTEM_ACCOUNT_NAME, "edge-watcher", `edge-watcher-${user.site}`);
    log.info({ site: user.site, user: user.name }, "site trust handed out");
    return {
      operatorJwt: ks.operatorJwt(),
      systemAccount: system.publicKey,
      account: tenant.publicKey,
      accounts: { [system.publicKey]: ks.accountJwt(SYSTEM_ACCOUNT_NAME), [tenant.publicKey]: ks.accountJwt(account) },
      syncCreds: sync.creds,
      ...(agent === undefined ? {} : { agentCreds: agent }),
      ...(ingress === undefined || watcher === undefined ? {} : { ingressCreds: ingress, watcherCreds: watcher }),
    };
  };

  const serve = (subject: string, handler: (msg: Msg) => unknown): Subscription =>
    nc.subscribe(subject, {
      queue: IDENTITY_QUEUE_GROUP,
      callback: (err, msg) => {
        if (err !== null) {
          log.warn({ err: errorMessage(err) }, "subscription error");
          return;
        }
        Promise.resolve()
          .then(() => handler(msg))
          .catch((e: unknown): CredentialReply => {
            const code = isFabricError(e) ? e.code : "FABRIC_ERR_PROVISION";
            if (!isFabricError(e)) log.error({ err: errorMessage(e), subject }, "identity request failed");
            else log.info({ code, subject }, "identity request refused");
            return { error: { code, message: errorMessage(e) } };
          })
          .then((reply) => msg.respond(JSON.stringify(reply)))
          .catch((e: unknown) => log.warn({ err: errorMessage(e) }, "could not reply"));
      },
    });

  const subs = [
    serve(subjects.identity.nonce, () => ({ nonce: makeNonce(key) })),
    serve(subjects.identity.provision, provision),
    serve(subjects.identity.renew, renew),
    serve(subjects.identity.site, site),
  ];
  log.info("identity service started");
  return {
    stop: async () => {
      for (const s of subs) s.unsubscribe();
      await nc.flush().catch(() => undefined);
    },
  };
}
