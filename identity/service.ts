import type { Msg, NatsConnection, Subscription } from "@nats-io/transport-node";
import type { z } from "zod";
import { errorMessage, isFabricError, subjects, type Logger } from "../fabric/core/index.js";
import { ProvisionError } from "./errors.js";
import { bootstrapTokenSchema, hashToken, issueUser } from "./issue.js";
import type { Keystore } from "./keystore.js";
import { identityMetrics } from "./metrics.js";
import { isPublicKey } from "./nkeys.js";
import { checkNonce, makeNonce, nonceKey, UsedNonces, type NonceOperation } from "./nonces.js";
import { exchangeExternalToken, ExternalTokenVerifier } from "./external/index.js";
import { exchangeRequestSchema, nonceRequestSchema, provisionRequestSchema, renewRequestSchema, siteTrustRequestSchema, type CredentialReply, type SiteTrust } from "./provision-protocol.js";
import { SYSTEM_ACCOUNT_NAME } from "./init.js";
import { validateUserJwt, verifyProof, type ValidatedUser } from "./validate.js";

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
  /** A connection into the tenant account, as a user allowed to subscribe to `$FABRIC.id.>` and to use KV `id_nonces`. */
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
    throw new ProvisionError("FABRIC_ERR_PROVISION", `request field ${issue?.path.join(".") || "?"} is invalid: ${issue?.message ?? ""}`);
  }
  return r.data;
}

function replyOf(issued: ReturnType<typeof issueUser>): CredentialReply {
  return { jwt: issued.jwt, ...(issued.record.expiresAt === undefined ? {} : { expiresAt: issued.record.expiresAt }) };
}

/** The identity service of one tenant account: nonces, provisioning with one-time tokens, renewal. */
export function startIdentityService(options: IdentityServiceOptions): IdentityService {
  const { keystore: ks, connection: nc, account, logger } = options;
  const log = logger.child({ service: "identity", account });
  const key = nonceKey(ks, account);
  const usedNonces = new UsedNonces(nc);
  const expirySec = options.deviceExpirySec ?? DEFAULT_DEVICE_EXPIRY_SEC;

  /** A request for a credential on the caller's own key: a nonce of ours for `operation`, signed by that key, spent. */
  const provenKey = async (req: { publicKey: string; nonce: string; signature: string }, operation: NonceOperation): Promise<void> => {
    checkNonce(key, req.nonce, operation);
    if (!isPublicKey(req.publicKey, "user")) throw new ProvisionError("FABRIC_ERR_PROOF_INVALID", "publicKey is not a user public key (U…)");
    if (!verifyProof(req.publicKey, req.nonce, req.signature)) throw new ProvisionError("FABRIC_ERR_PROOF_INVALID", "signature over the nonce does not verify with publicKey");
    await usedNonces.claim(req.nonce);
  };

  /**
   * Everything is checked before the token is spent (nonce, proof, key, name, token, what the credential would
   * be); only a credential issued spends it. A retry of a provision whose reply was lost (the same token, name
   * and key) gets a credential again; a second token for a device already provisioned with that key is refused
   * (renew instead) and stays unspent.
   */
  const provision = async (msg: Msg): Promise<CredentialReply> => {
    const req = parse(provisionRequestSchema, msg);
    await provenKey(req, "provision");
    return ks.withLock(() => {
      const acc = ks.account(account);
      if (acc.revocations[req.publicKey] !== undefined) throw new ProvisionError("FABRIC_ERR_CREDENTIAL_REVOKED", "this key has been revoked: provision a new key");
      const tokenHash = hashToken(req.token);
      const found = ks.peekToken(account, tokenHash);
      if (found === "unknown") throw new ProvisionError("FABRIC_ERR_TOKEN_INVALID", "bootstrap token is unknown");
      const token = bootstrapTokenSchema.safeParse(found.data);
      if (!token.success) throw new ProvisionError("FABRIC_ERR_TOKEN_INVALID", "bootstrap token record is unreadable");
      const { site } = token.data;
      const issue = (): ReturnType<typeof issueUser> => issueUser(ks, { account, role: "device", name: req.name, site, publicKey: req.publicKey, expiresInSec: expirySec });
      if (found.state === "used") {
        const by = token.data.usedBy;
        if (by?.name !== req.name || by.publicKey !== req.publicKey) throw new ProvisionError("FABRIC_ERR_TOKEN_USED", "bootstrap token has already been used");
        // the same device again (its reply was lost): the same credential, nothing more spent
        const issued = issue();
        log.info({ device: req.name, site, publicKey: req.publicKey }, "device provisioned again by a retry of its token");
        options.onIssued?.("provision", req.name, req.publicKey);
        return replyOf(issued);
      }
      if (token.data.expiresAt * 1000 < Date.now()) throw new ProvisionError("FABRIC_ERR_TOKEN_EXPIRED", "bootstrap token has expired");
      const now = Math.floor(Date.now() / 1000);
      const active = ks.users(account).filter((u) => u.role === "device" && u.name === req.name && u.site === site && u.revokedAt === undefined && (u.expiresAt === undefined || u.expiresAt > now));
      if (active.some((u) => u.publicKey !== req.publicKey)) throw new ProvisionError("FABRIC_ERR_PROVISION", `device name ${req.name} is already held by another key at site ${site}`);
      if (active.length > 0) throw new ProvisionError("FABRIC_ERR_ALREADY_PROVISIONED", `device ${req.name} at site ${site} is provisioned with this key already: renew its credential instead (the token was not spent)`);
      const spent = ks.consumeToken(account, tokenHash, { name: req.name, publicKey: req.publicKey, at: now });
      if (typeof spent !== "object" || spent === null) throw new ProvisionError("FABRIC_ERR_TOKEN_USED", "bootstrap token has already been used");
      let issued;
      try {
        issued = issue();
      } catch (err) {
        ks.restoreToken(account, tokenHash, spent);
        throw err;
      }
      log.info({ device: req.name, site, publicKey: req.publicKey }, "device provisioned");
      options.onIssued?.("provision", req.name, req.publicKey);
      return replyOf(issued);
    });
  };

  /** The caller of a signed request (its JWT, a nonce of ours and its signature over it), if its role may ask. */
  /**
   * The caller of a signed request (its JWT, a nonce of ours for `operation` and its signature over it), if its
   * role may ask. A credential refused keeps its own code (revoked: FABRIC_ERR_CREDENTIAL_REVOKED, as everywhere).
   */
  const signedCaller = async (req: { jwt: string; nonce: string; signature: string }, operation: NonceOperation, roles: ReadonlySet<string>): Promise<ValidatedUser> => {
    checkNonce(key, req.nonce, operation);
    const user = validateUserJwt(req.jwt, ks.trustAnchors());
    if (user.accountName !== account) throw new ProvisionError("FABRIC_ERR_PROOF_INVALID", "credential belongs to another account");
    if (!verifyProof(user.publicKey, req.nonce, req.signature)) throw new ProvisionError("FABRIC_ERR_PROOF_INVALID", "signature over the nonce does not verify with the credential's key");
    await usedNonces.claim(req.nonce);
    if (user.role === undefined || !roles.has(user.role)) throw new ProvisionError("FABRIC_ERR_PERMISSION_DENIED", `role ${user.role ?? "(none)"} may not ${operation} here (${[...roles].join(", ")} may)`);
    return user;
  };

  const renew = async (msg: Msg): Promise<CredentialReply> => {
    const user = await signedCaller(parse(renewRequestSchema, msg), "renew", RENEWABLE_ROLES);
    const life = user.claims.exp === undefined ? expirySec : Math.max(60, user.claims.exp - user.claims.iat);
    return ks.withLock(() => {
      if (ks.account(account).revocations[user.publicKey] !== undefined) throw new ProvisionError("FABRIC_ERR_CREDENTIAL_REVOKED", "this key has been revoked");
      const issued = issueUser(ks, { account, role: user.role ?? "device", name: user.name, site: user.site, publicKey: user.publicKey, expiresInSec: life });
      log.info({ user: user.name, site: user.site, publicKey: user.publicKey }, "credential renewed");
      options.onIssued?.("renew", user.name, user.publicKey);
      return replyOf(issued);
    });
  };

  /** A site's leaf: the operator and account JWTs its server trusts offline, and a short-lived sync credential. */
  const site = async (msg: Msg): Promise<SiteTrust> => {
    const req = parse(siteTrustRequestSchema, msg);
    const user = await signedCaller(req, "site", SITE_ROLES_ALLOWED);
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
      // link accounts first: the tenant account of a region imports from them, and a server lacking one stalls
      accounts: {
        ...Object.fromEntries(ks.accounts().flatMap((a) => (a.link === undefined ? [] : [[a.publicKey, ks.accountJwt(a.name)]]))),
        [system.publicKey]: ks.accountJwt(SYSTEM_ACCOUNT_NAME),
        [tenant.publicKey]: ks.accountJwt(account),
      },
      syncCreds: sync.creds,
      ...(agent === undefined ? {} : { agentCreds: agent }),
      ...(ingress === undefined || watcher === undefined ? {} : { ingressCreds: ingress, watcherCreds: watcher }),
    };
  };

  /** An identity provider's token for a credential on the caller's key: its nonce, proof, then the exchange. */
  const verifier = new ExternalTokenVerifier();
  const exchange = async (msg: Msg): Promise<CredentialReply> => {
    const req = parse(exchangeRequestSchema, msg);
    await provenKey(req, "exchange");
    const r = await exchangeExternalToken(ks, verifier, req.token, req.publicKey);
    log.info({ provider: r.provider, role: r.role, user: r.name, site: r.site, publicKey: req.publicKey }, "identity provider token exchanged");
    return { jwt: r.jwt, expiresAt: r.expiresAt };
  };

  const serve = (subject: string, handler: (msg: Msg) => unknown): Subscription => {
    const operation = subject.slice(subject.lastIndexOf(".") + 1);
    return nc.subscribe(subject, {
      queue: IDENTITY_QUEUE_GROUP,
      callback: (err, msg) => {
        if (err !== null) {
          log.warn({ err: errorMessage(err) }, "subscription error");
          return;
        }
        Promise.resolve()
          .then(() => handler(msg))
          .then(
            (reply) => {
              identityMetrics.request(operation, "ok");
              return reply;
            },
            (e: unknown): CredentialReply => {
              // a fault of the service is not the caller's bad input
              const code = isFabricError(e) ? e.code : "FABRIC_ERR_INTERNAL";
              if (!isFabricError(e)) log.error({ err: errorMessage(e), subject }, "identity request failed");
              else log.info({ code, subject }, "identity request refused");
              identityMetrics.request(operation, isFabricError(e) ? "refused" : "error", code);
              return { error: { code, message: errorMessage(e) } };
            },
          )
          .then((reply) => msg.respond(JSON.stringify(reply)))
          .catch((e: unknown) => log.warn({ err: errorMessage(e) }, "could not reply"));
      },
    });
  };

  const subs = [
    serve(subjects.identity.nonce, (msg) => ({ nonce: makeNonce(key, parse(nonceRequestSchema, msg).operation) })),
    serve(subjects.identity.provision, provision),
    serve(subjects.identity.renew, renew),
    serve(subjects.identity.site, site),
    serve(subjects.identity.exchange, exchange),
  ];
  log.info("identity service started");
  return {
    stop: async () => {
      for (const s of subs) s.unsubscribe();
      await nc.flush().catch(() => undefined);
    },
  };
}
