import { randomBytes } from "node:crypto";
import { errorMessage } from "../fabric/core/index.js";
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

/** Verifies device credentials against the account JWTs the watcher holds (the chain, revocations, expiry). */
export function createAuthenticator(watcher: AccountWatcher, accountKey: string): Authenticator {
  const seenProofs = new Map<string, number>();
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
      const parts = password.toString("utf8").trim().split(".");
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
