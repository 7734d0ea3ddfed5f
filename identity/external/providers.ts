import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { ensurePrivateDir, isToken, parseInput, writeSecretFile } from "../../fabric/core/index.js";
import type { Keystore } from "../keystore.js";
import { ExternalIdentityError } from "./errors.js";

/** Signature algorithms an IdP token may use (never `none`, never HMAC: the fabric holds no IdP secret). */
export const EXTERNAL_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"] as const;

const token = z.string().refine(isToken, "use 1-64 of lowercase letters, digits, '_' and '-'");
/** `{claim}` or `{claim.path}`: a claim's value; anything else is literal. */
const template = z.string().min(1).max(256);

/**
 * A mapping rule: when every `when` claim matches (a string claim equal to the value, or to one of the values;
 * an array claim, such as groups, containing one), the token's holder gets `role`, at `site`, named `name`.
 * `site` and `name` are templates over the claims (`{acct}`, `{sub}`); what they resolve to must be a fabric
 * token, or the exchange is refused.
 */
export const externalRuleSchema = z.strictObject({
  when: z.record(z.string().min(1), z.union([z.string(), z.array(z.string()).min(1)])).default({}),
  role: token,
  site: template.optional(),
  name: template.default("{sub}"),
});
export type ExternalRule = z.infer<typeof externalRuleSchema>;

export const externalProviderSchema = z.strictObject({
  /** The provider's name in the fabric (`fabric-id idp ls`, `revoke external --provider`). */
  name: token,
  /** The `iss` its tokens carry, exactly. */
  issuer: z.url(),
  /** Where its signing keys are (JSON Web Key Set). */
  jwksUri: z.url(),
  /** A token must name one of these in `aud`. */
  audiences: z.array(z.string().min(1)).min(1),
  algorithms: z.array(z.enum(EXTERNAL_ALGORITHMS)).min(1).default(["RS256", "ES256", "EdDSA"]),
  /** The tenant account the credentials are issued in (default: the first). */
  account: token.optional(),
  /** A fabric credential lives at most this long, and never past the IdP token's `exp`. */
  maxTtlSec: z.number().int().min(60).max(30 * 86_400).default(3_600),
  /** Clock skew allowed on `exp`, `nbf` and `iat`. */
  clockToleranceSec: z.number().int().min(0).max(300).default(5),
  /** First matching rule wins. */
  rules: z.array(externalRuleSchema).min(1),
});
export type ExternalProvider = z.infer<typeof externalProviderSchema>;
export type ExternalProviderInput = z.input<typeof externalProviderSchema>;

const providersFileSchema = z.strictObject({ providers: z.array(externalProviderSchema) });

/** An external subject refused from `at` on (unix seconds). */
const revokedFileSchema = z.strictObject({ subjects: z.array(z.strictObject({ provider: token, subject: z.string().min(1), at: z.number().int() })) });
export type RevokedSubject = z.infer<typeof revokedFileSchema>["subjects"][number];

const dir = (ks: Keystore): string => join(ks.dir, "external");
const read = <S extends z.ZodType>(path: string, schema: S, empty: z.infer<S>): z.infer<S> => {
  if (!existsSync(path)) return empty;
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw new ExternalIdentityError("FABRIC_ERR_EXTERNAL_CONFIG", `${path} is not JSON`, { cause: err });
  }
  return parseInput(schema, raw, path);
};

/** The identity providers whose tokens the fabric exchanges (`<keystore>/external/providers.json`). */
export function readProviders(ks: Keystore): ExternalProvider[] {
  return read(join(dir(ks), "providers.json"), providersFileSchema, { providers: [] }).providers;
}

/** Adds or replaces a provider (validated; its name and issuer are unique). Call under the keystore lock. */
export function putProvider(ks: Keystore, input: unknown): ExternalProvider {
  const p = parseInput(externalProviderSchema, input, "identity provider");
  if (p.account !== undefined) ks.account(p.account);
  const others = readProviders(ks).filter((x) => x.name !== p.name);
  const clash = others.find((x) => x.issuer === p.issuer);
  if (clash !== undefined) throw new ExternalIdentityError("FABRIC_ERR_EXTERNAL_CONFIG", `issuer ${p.issuer} is provider ${clash.name} already`);
  ensurePrivateDir(dir(ks));
  writeSecretFile(join(dir(ks), "providers.json"), `${JSON.stringify({ providers: [...others, p].sort((a, b) => a.name.localeCompare(b.name)) }, null, 2)}\n`);
  return p;
}

/** Removes a provider; returns whether there was one. Call under the keystore lock. */
export function removeProvider(ks: Keystore, name: string): boolean {
  const all = readProviders(ks);
  const rest = all.filter((x) => x.name !== name);
  if (rest.length === all.length) return false;
  writeSecretFile(join(dir(ks), "providers.json"), `${JSON.stringify({ providers: rest }, null, 2)}\n`);
  return true;
}

export function readRevokedSubjects(ks: Keystore): RevokedSubject[] {
  return read(join(dir(ks), "revoked.json"), revokedFileSchema, { subjects: [] }).subjects;
}

/** Records that `subject` of `provider` is refused from now on. Call under the keystore lock. */
export function revokeSubject(ks: Keystore, provider: string, subject: string, now = Math.floor(Date.now() / 1000)): void {
  const rest = readRevokedSubjects(ks).filter((s) => !(s.provider === provider && s.subject === subject));
  ensurePrivateDir(dir(ks));
  writeSecretFile(join(dir(ks), "revoked.json"), `${JSON.stringify({ subjects: [...rest, { provider, subject, at: now }] }, null, 2)}\n`);
}
