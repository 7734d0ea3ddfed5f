import { createHash, randomBytes } from "node:crypto";
import { errorMessage, isFabricError } from "../fabric/core/index.js";
import { CredentialError, validateUserJwt, verifyProof, type AccountWatcher, type ValidatedUser } from "../identity/index.js";
import { PROOF_WINDOW_MS } from "./config.js";
import { MqttError, ReasonCode } from "./errors.js";

/** The MQTT 5 enhanced-authentication method: the server sends a nonce, the device signs it with its NKey. */
export const FABRIC_AUTH_METHOD = "FABRIC-NKEY";

/** What a device signs for a proof-of-possession password (MQTT 3): binds it to the session and the time. */
export function proofMessage(username: string, clientId: string, timestampMs: number): string {
  return `fabric-mqtt:${username}:${clientId}:${timestampMs}`;
}

/**
 * The MQTT password of a device holding its own key: `<jwt>.<timestamp ms>.<base64url signature>`, the
 * signature being over `fabric-mqtt:<username>:<client id>:<timestamp ms>` (no bearer secret on the wire).
 */
export function proofPassword(jwt: string, username: string, clientId: string, sign: (data: Uint8Array) => Uint8Array, now = Date.now()): string {
  const sig = Buffer.from(sign(Buffer.from(proofMessage(username, clientId, now), "utf8"))).toString("base64url");
  return `${jwt}.${now}.${sig}`;
}

export interface Authenticator {
  /** MQTT 3 (and 5 without a method): username = device name, password = bearer JWT or proof password. */
  password(username: string | undefined, password: Buffer | undefined, clientId: string): Promise<ValidatedUser>;
  /** MQTT 5 enhanced authentication, first step: the JWT from CONNECT; returns the nonce to send. */
  challenge(jwt: Buffer | undefined): Promise<{ user: ValidatedUser; nonce: string }>;
  /** Second step: the signature over the nonce. */
  verifyChallenge(user: ValidatedUser, nonce: string, signature: Buffer | undefined): void;
  /** Re-checks a connected user against the current account JWT; throws when revoked or expired. */
  recheck(user: ValidatedUser): void;
}

const refuse = (message: string, cause?: unknown): MqttError =>
  new MqttError(cause instanceof CredentialError && cause.code === "FABRIC_ERR_CREDENTIAL_REVOKED" ? ReasonCode.NotAuthorized : ReasonCode.BadUserNameOrPassword, message, { cause });

/** An identity provider's token exchanged for a fabric user JWT (the identity service's token exchange). */
export type ExternalExchange = (token: string) => Promise<string>;

/** Whether a password is an identity provider's JWT (signed with an IdP's algorithm), not a fabric one. */
export function isExternalToken(password: string): boolean {
  const parts = password.split(".");
  if (parts.length !== 3) return false;
  try {
    const header = JSON.parse(Buffer.from(parts[0] ?? "", "base64url").toString("utf8")) as { alg?: unknown };
    return typeof header.alg === "string" && header.alg !== "ed25519-nkey";
  } catch {
    return false;
  }
}

/** Exchanged credentials kept per IdP token until they expire, so reconnects do not exchange again. */
const EXCHANGE_CACHE_MAX = 10_000;

/**
 * Verifies device credentials against the account JWTs the watcher holds (the chain, revocations, expiry). With
 * `exchange`, an identity provider's token as the password (MQTT 3 and 5) is exchanged for a fabric credential
 * first: the client is then that credential's user (its role, site and name from the provider's rules), until
 * the token expires; a revocation of the provider's subject disconnects it.
 */
export function createAuthenticator(watcher: AccountWatcher, accountKey: string, exchange?: ExternalExchange): Authenticator {
  const seenProofs = new Map<string, number>();
  const exchanged = new Map<string, { jwt: string; exp: number }>();
  const fromExternal = async (token: string): Promise<ValidatedUser> => {
    if (exchange === undefined) throw new MqttError(ReasonCode.BadUserNameOrPassword, "identity provider tokens are not taken here (no identity service)");
    const id = createHash("sha256").update(token).digest("base64url");
    const now = Math.floor(Date.now() / 1000);
    let held = exchanged.get(id);
    if (held === undefined || held.exp <= now) {
      let jwt: string;
      try {
        jwt = await exchange(token);
      } catch (err) {
        const code = isFabricError(err) ? err.code : undefined;
        throw new MqttError(code === "FABRIC_ERR_EXTERNAL_NO_ROLE" || code === "FABRIC_ERR_EXTERNAL_REVOKED" ? ReasonCode.NotAuthorized : ReasonCode.BadUserNameOrPassword, `identity provider token refused: ${errorMessage(err)}`, { cause: err });
      }
      const exp = Number((JSON.parse(Buffer.from(jwt.split(".")[1] ?? "", "base64url").toString("utf8")) as { exp?: unknown }).exp ?? now + 60);
      if (exchanged.size >= EXCHANGE_CACHE_MAX) for (const [k, v] of exchanged) if (v.exp <= now || exchanged.size >= EXCHANGE_CACHE_MAX) exchanged.delete(k);
      held = { jwt, exp };
      exchanged.set(id, held);
    }
    // checked like any credential: a revoked one (the provider's subject revoked) is refused here
    return validate(held.jwt);
  };
  const validate = async (jwt: string): Promise<ValidatedUser> => {
    const parts = jwt.split(".");
    let account: string | undefined;
    try {
      const body = JSON.parse(Buffer.from(parts[1] ?? "", "base64url").toString("utf8")) as { nats?: { issuer_account?: string }; iss?: string };
      account = body.nats?.issuer_account ?? body.iss;
    } catch {
      throw new MqttError(ReasonCode.BadUserNameOrPassword, "the credential is not a JWT");
    }
    if (account !== accountKey) throw new MqttError(ReasonCode.NotAuthorized, "the credential belongs to another account than this ingress serves");
    await watcher.ensure(accountKey);
    try {
      return validateUserJwt(jwt, watcher);
    } catch (err) {
      throw refuse(`credential refused: ${errorMessage(err)}`, err);
    }
  };
  const sweep = (now: number): void => {
    if (seenProofs.size < 10_000) return;
    for (const [k, t] of seenProofs) if (t < now - PROOF_WINDOW_MS) seenProofs.delete(k);
  };
  return {
    password: async (username, password, clientId) => {
      if (password === undefined || password.length === 0) throw new MqttError(ReasonCode.BadUserNameOrPassword, "a password (the device's credential) is required");
      const text = password.toString("utf8").trim();
      // an identity provider's token: the username is the client's to choose (the token says who it is)
      if (isExternalToken(text)) return fromExternal(text);
      const parts = text.split(".");
      if (parts.length !== 3 && parts.length !== 5) throw new MqttError(ReasonCode.BadUserNameOrPassword, "the password is neither a JWT nor a JWT with a proof of possession");
      const user = await validate(parts.slice(0, 3).join("."));
      if (username !== undefined && username !== "" && username !== user.name) {
        throw new MqttError(ReasonCode.BadUserNameOrPassword, `username ${JSON.stringify(username)} is not the credential's name`);
      }
      if (parts.length === 3) {
        if (user.permissions.bearer_token !== true) throw new MqttError(ReasonCode.BadUserNameOrPassword, "this credential is not a bearer token: sign a proof of possession (jwt.timestamp.signature)");
        return user;
      }
      const ts = Number(parts[3]);
      const now = Date.now();
      if (!Number.isSafeInteger(ts) || Math.abs(now - ts) > PROOF_WINDOW_MS) throw new MqttError(ReasonCode.BadUserNameOrPassword, "the proof's timestamp is missing or too far from the server's clock");
      if (!verifyProof(user.publicKey, proofMessage(username ?? user.name, clientId, ts), parts[4] ?? "")) {
        throw new MqttError(ReasonCode.BadUserNameOrPassword, "the proof of possession does not verify with the credential's key");
      }
      const replayKey = `${user.publicKey}:${ts}:${clientId}`;
      if (seenProofs.has(replayKey)) throw new MqttError(ReasonCode.BadUserNameOrPassword, "this proof of possession was used already");
      sweep(now);
      seenProofs.set(replayKey, ts);
      return user;
    },
    challenge: async (jwt) => {
      if (jwt === undefined || jwt.length === 0) throw new MqttError(ReasonCode.BadUserNameOrPassword, `${FABRIC_AUTH_METHOD} needs the JWT as authentication data`);
      const user = await validate(jwt.toString("utf8").trim());
      return { user, nonce: randomBytes(32).toString("base64url") };
    },
    verifyChallenge: (user, nonce, signature) => {
      if (signature === undefined || !verifyProof(user.publicKey, nonce, Buffer.from(signature).toString("base64url"))) {
        throw new MqttError(ReasonCode.NotAuthorized, "the signature over the nonce does not verify with the credential's key");
      }
    },
    recheck: (user) => {
      try {
        validateUserJwt(user.jwt, watcher);
      } catch (err) {
        throw refuse(errorMessage(err), err);
      }
    },
  };
}
