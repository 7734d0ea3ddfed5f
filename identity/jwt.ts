import { createHash } from "node:crypto";
import type { z } from "zod";
import { CredentialError } from "./errors.js";
import { verifySignature, type NKeyPair } from "./nkeys.js";

/** The NATS v2 JWT header. */
const HEADER = Buffer.from(JSON.stringify({ typ: "JWT", alg: "ed25519-nkey" })).toString("base64url");

/** Claims before signing: the encoder fills in `iss` and `jti`. */
export type UnsignedClaims<T extends { iss: string; jti: string }> = Omit<T, "iss" | "jti">;

/**
 * Signs claims as a NATS v2 JWT with node:crypto Ed25519. `iat` is the caller's (account JWTs must be
 * strictly newer than the last one pushed, so the caller controls it); `jti` is a hash of the claims.
 */
export function encodeJwt<T extends { iss: string; jti: string }>(claims: UnsignedClaims<T>, signer: NKeyPair): string {
  const withIss = { ...claims, iss: signer.publicKey, jti: "" } as Record<string, unknown>;
  delete withIss["jti"];
  const jti = createHash("sha512-256").update(JSON.stringify(withIss)).digest().toString("base64url");
  const body = Buffer.from(JSON.stringify({ jti, ...withIss })).toString("base64url");
  const signed = `${HEADER}.${body}`;
  const sig = Buffer.from(signer.sign(Buffer.from(signed, "ascii"))).toString("base64url");
  return `${signed}.${sig}`;
}

/**
 * Decodes a JWT, checks its signature against its own `iss` and its shape against `schema`. Throws a
 * CredentialError (MALFORMED or SIGNATURE) naming what was wrong. Trust in the issuer is the caller's.
 */
export function decodeJwt<S extends z.ZodType>(jwt: string, schema: S, what = "JWT"): z.infer<S> {
  const parts = jwt.trim().split(".");
  if (parts.length !== 3) throw new CredentialError("FABRIC_ERR_CREDENTIAL_MALFORMED", `${what} must have 3 parts, has ${parts.length}`);
  const [h, b, s] = parts as [string, string, string];
  let header: unknown;
  let body: unknown;
  try {
    header = JSON.parse(Buffer.from(h, "base64url").toString("utf8"));
    body = JSON.parse(Buffer.from(b, "base64url").toString("utf8"));
  } catch (err) {
    throw new CredentialError("FABRIC_ERR_CREDENTIAL_MALFORMED", `${what} is not base64url JSON`, { cause: err });
  }
  const alg = (header as { alg?: unknown } | null)?.alg;
  if (alg !== "ed25519-nkey") throw new CredentialError("FABRIC_ERR_CREDENTIAL_MALFORMED", `${what} has algorithm ${String(alg)}, expected ed25519-nkey`);
  const parsed = schema.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const path = issue === undefined ? "" : issue.path.join(".");
    throw new CredentialError("FABRIC_ERR_CREDENTIAL_MALFORMED", `${what} claims are invalid at ${path === "" ? "(root)" : path}: ${issue?.message ?? "unknown"}`);
  }
  const iss = (parsed.data as { iss: string }).iss;
  if (!verifySignature(iss, Buffer.from(`${h}.${b}`, "ascii"), Buffer.from(s, "base64url"))) {
    throw new CredentialError("FABRIC_ERR_CREDENTIAL_SIGNATURE", `${what} signature does not verify against its issuer ${iss}`);
  }
  return parsed.data;
}

/** Reads the claims without verifying anything: for display only. */
export function peekJwt(jwt: string): Record<string, unknown> {
  const b = jwt.trim().split(".")[1];
  if (b === undefined) throw new CredentialError("FABRIC_ERR_CREDENTIAL_MALFORMED", "not a JWT");
  try {
    return JSON.parse(Buffer.from(b, "base64url").toString("utf8")) as Record<string, unknown>;
  } catch (err) {
    throw new CredentialError("FABRIC_ERR_CREDENTIAL_MALFORMED", "JWT body is not base64url JSON", { cause: err });
  }
}
