import { randomBytes } from "node:crypto";
import { Metadata, type ServiceError } from "@grpc/grpc-js";
import { keyPairFromSeed, parseCreds, validateUserJwt, verifyProof, type AccountWatcher, type ValidatedUser } from "../../identity/index.js";
import { errorMessage, type Logger } from "../core/index.js";
import { GatewayError, toServiceError } from "./errors.js";

/** How far a call's timestamp may be from the gateway's clock; nonces are remembered this long. */
export const REPLAY_WINDOW_MS = 30_000; // 30 s

/** The metadata every call carries. */
export const AUTH_HEADERS = { jwt: "fabric-jwt", ts: "fabric-ts", nonce: "fabric-nonce", sig: "fabric-sig" } as const;

/** What the caller signs with its NKey: the full method path, the timestamp and a fresh nonce. */
export function signedPayload(method: string, ts: string, nonce: string): string {
  return `${method}\n${ts}\n${nonce}`;
}

/** A client's metadata for one call, from its creds file's text (what a fabric gRPC client sends). */
export function callMetadata(creds: string, method: string, now = Date.now()): Metadata {
  const { jwt, seed } = parseCreds(creds);
  const kp = keyPairFromSeed(seed);
  const ts = String(now);
  const nonce = randomBytes(18).toString("base64url");
  const md = new Metadata();
  md.set(AUTH_HEADERS.jwt, jwt);
  md.set(AUTH_HEADERS.ts, ts);
  md.set(AUTH_HEADERS.nonce, nonce);
  md.set(AUTH_HEADERS.sig, Buffer.from(kp.sign(Buffer.from(signedPayload(method, ts, nonce), "utf8"))).toString("base64url"));
  return md;
}

export type Caller = ValidatedUser;

/**
 * Verifies callers: the user JWT's chain against the account JWTs as pushed (expiry, revocation, issuer), and
 * the NKey signature over method, timestamp and nonce within the replay window, each nonce once. Open streams
 * register here and end with UNAUTHENTICATED within milliseconds of a revocation, or when the JWT expires.
 */
export class CallerAuth {
  private readonly nonces = new Map<string, number>();
  private readonly open = new Set<{ caller: Caller; end: (err: Partial<ServiceError>) => void; timer: NodeJS.Timeout | undefined }>();
  private readonly unlisten: () => void;
  private readonly sweeper: NodeJS.Timeout;

  constructor(
    private readonly watcher: AccountWatcher,
    private readonly accountKey: string,
    private readonly log: Logger,
  ) {
    this.unlisten = watcher.onUpdate(() => this.recheck());
    this.sweeper = setInterval(() => {
      const now = Date.now();
      for (const [n, until] of this.nonces) if (until < now) this.nonces.delete(n);
    }, REPLAY_WINDOW_MS);
    this.sweeper.unref();
  }

  /** The caller of a call, or GatewayError / CredentialError (mapped to UNAUTHENTICATED). */
  authenticate(md: Metadata, method: string, now = Date.now()): Caller {
    const get = (k: string): string => {
      const v = md.get(k)[0];
      if (typeof v !== "string" || v.length === 0) throw new GatewayError("FABRIC_ERR_UNAUTHENTICATED", `missing ${k} metadata`);
      return v;
    };
    const jwt = get(AUTH_HEADERS.jwt);
    const ts = get(AUTH_HEADERS.ts);
    const nonce = get(AUTH_HEADERS.nonce);
    const sig = get(AUTH_HEADERS.sig);
    const at = Number(ts);
    if (!Number.isSafeInteger(at) || Math.abs(now - at) > REPLAY_WINDOW_MS) throw new GatewayError("FABRIC_ERR_UNAUTHENTICATED", `${AUTH_HEADERS.ts} is not within ${REPLAY_WINDOW_MS / 1000} s of the gateway's clock`);
    if (nonce.length < 16 || nonce.length > 128) throw new GatewayError("FABRIC_ERR_UNAUTHENTICATED", `${AUTH_HEADERS.nonce} must be 16-128 characters`);
    const caller = validateUserJwt(jwt, this.watcher, now);
    if (caller.account !== this.accountKey) throw new GatewayError("FABRIC_ERR_UNAUTHENTICATED", "the credential is of another account");
    if (!verifyProof(caller.publicKey, signedPayload(method, ts, nonce), sig)) throw new GatewayError("FABRIC_ERR_UNAUTHENTICATED", `${AUTH_HEADERS.sig} does not verify with the credential's key over this method, timestamp and nonce`);
    const seen = `${caller.publicKey}:${nonce}`;
    if (this.nonces.has(seen)) throw new GatewayError("FABRIC_ERR_UNAUTHENTICATED", "replayed request: this nonce was used already");
    this.nonces.set(seen, now + 2 * REPLAY_WINDOW_MS);
    return caller;
  }

  /** An open stream of `caller`: `end` is called once the caller's credential is revoked or expires. Returns the unregister. */
  track(caller: Caller, end: (err: Partial<ServiceError>) => void): () => void {
    const entry: { caller: Caller; end: (err: Partial<ServiceError>) => void; timer: NodeJS.Timeout | undefined } = { caller, end, timer: undefined };
    if (caller.expiresAt !== undefined) {
      entry.timer = setTimeout(() => this.cut(entry, new GatewayError("FABRIC_ERR_UNAUTHENTICATED", "the credential expired")), Math.max(0, caller.expiresAt * 1000 - Date.now()));
      entry.timer.unref();
    }
    this.open.add(entry);
    return () => {
      clearTimeout(entry.timer);
      this.open.delete(entry);
    };
  }

  stop(): void {
    this.unlisten();
    clearInterval(this.sweeper);
    for (const e of this.open) clearTimeout(e.timer);
    this.open.clear();
  }

  /** An account changed: every open stream's credential is checked again. */
  private recheck(): void {
    for (const e of this.open) {
      try {
        validateUserJwt(e.caller.jwt, this.watcher);
      } catch (err) {
        this.log.info({ user: e.caller.name, publicKey: e.caller.publicKey, err: errorMessage(err) }, "ending the streams of a caller no longer trusted");
        this.cut(e, err);
      }
    }
  }

  private cut(e: { caller: Caller; end: (err: Partial<ServiceError>) => void; timer: NodeJS.Timeout | undefined }, err: unknown): void {
    if (!this.open.delete(e)) return;
    clearTimeout(e.timer);
    e.end(toServiceError(err));
  }
}
