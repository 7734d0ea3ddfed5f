import type { JWTPayload } from "jose";
import { isToken } from "../../fabric/core/index.js";
import { ExternalIdentityError } from "./errors.js";
import type { ExternalProvider, ExternalRule } from "./providers.js";

/** A claim by dot path (`realm_access.roles`). */
function claimAt(claims: JWTPayload, path: string): unknown {
  let v: unknown = claims;
  for (const k of path.split(".")) {
    if (v === null || typeof v !== "object") return undefined;
    v = (v as Record<string, unknown>)[k];
  }
  return v;
}

function matches(claims: JWTPayload, rule: ExternalRule): boolean {
  return Object.entries(rule.when).every(([path, want]) => {
    const wanted = typeof want === "string" ? [want] : want;
    const have = claimAt(claims, path);
    if (Array.isArray(have)) return have.some((x) => typeof x === "string" && wanted.includes(x));
    return (typeof have === "string" || typeof have === "number" || typeof have === "boolean") && wanted.includes(String(have));
  });
}

/** Resolves `{claim}` references; the result must be a fabric token (a subject token). */
function resolve(template: string, claims: JWTPayload, what: string): string {
  const out = template.replace(/\{([^{}]+)\}/g, (_m, path: string) => {
    const v = claimAt(claims, path.trim());
    if (typeof v !== "string" && typeof v !== "number") {
      throw new ExternalIdentityError("FABRIC_ERR_EXTERNAL_NO_ROLE", `the ${what} comes from claim ${path}, which the token does not carry as a string`);
    }
    return String(v);
  });
  const name = out.toLowerCase();
  if (!isToken(name)) throw new ExternalIdentityError("FABRIC_ERR_EXTERNAL_NO_ROLE", `the ${what} ${JSON.stringify(out)} from the token is not a fabric name (1-64 of lowercase letters, digits, '_' and '-')`);
  return name;
}

export interface MappedIdentity {
  role: string;
  name: string;
  site?: string;
  /** The index of the rule that matched. */
  rule: number;
}

/** What the token's holder is in the fabric: the first rule whose claims match; FABRIC_ERR_EXTERNAL_NO_ROLE for none. */
export function mapClaims(provider: ExternalProvider, claims: JWTPayload): MappedIdentity {
  const i = provider.rules.findIndex((r) => matches(claims, r));
  const rule = provider.rules[i];
  if (rule === undefined) throw new ExternalIdentityError("FABRIC_ERR_EXTERNAL_NO_ROLE", `no rule of provider ${provider.name} matches the token's claims: it maps to no role`);
  const site = rule.site === undefined ? undefined : resolve(rule.site, claims, "site");
  return { role: rule.role, name: resolve(rule.name, claims, "name"), ...(site === undefined ? {} : { site }), rule: i };
}
