import { z } from "zod";
import { isValidSubject, TOKEN_PATTERN } from "../fabric/core/index.js";
import type { UserPermissionLimits } from "./claims.js";

/**
 * Roles are scoped signing keys of an account: the key's template carries the permissions, so the user JWTs
 * it signs carry only a name and tags (`site:<site>`). Templates use the server's functions: `{{name()}}`,
 * `{{tag(site)}}`, `{{subject()}}`, `{{account-name()}}`, `{{account-tag(x)}}`.
 */
export const BUILTIN_ROLES = ["device", "leaf", "edge-agent", "edge-ingress", "service", "ingress", "mqtt", "bootstrap", "hub"] as const;
export type BuiltinRole = (typeof BUILTIN_ROLES)[number];

/** Unlimited connection limits in a template (the JWT default of 0 would mean "nothing"). */
const NO_LIMITS = { subs: -1, data: -1, payload: -1 } as const;
/** Devices may answer a request once within 5 minutes (in nanoseconds, as the server counts). */
const ONE_RESPONSE = { max: 1, ttl: 300_000_000_000 } as const;

const SITE = "{{tag(site)}}";
const NAME = "{{name()}}";

/** Inbox prefix a device uses (nats.js `inboxPrefix`) so its replies stay private to it. */
export function deviceInboxPrefix(site: string, device: string): string {
  return `_INBOX.${site}.${device}`;
}

const DEVICE_TEMPLATE: UserPermissionLimits = {
  pub: { allow: [`telemetry.${SITE}.${NAME}.>`, `events.${SITE}.${NAME}.>`, "$FABRIC.id.nonce", "$FABRIC.id.renew"] },
  sub: { allow: [`cmd.${SITE}.${NAME}.>`, `_INBOX.${SITE}.${NAME}.>`] },
  resp: ONE_RESPONSE,
  ...NO_LIMITS,
};

export const BUILTIN_ROLE_TEMPLATES: Readonly<Record<BuiltinRole, UserPermissionLimits>> = {
  /** A device: its own telemetry and events, its own commands, renewal of its own credential. */
  device: DEVICE_TEMPLATE,
  /**
   * A site's leaf node, as the hub sees its link (pub: what the site may send into the hub, sub: what the hub
   * may send to the site). Telemetry and events never cross as plain messages (they would bypass the site's
   * store-and-forward and arrive twice): they reach the hub only through the hub sourcing the site's streams
   * from the site's durable consumers `hub-<site>`, which deliver on `$FABRIC.src.<site>.*` and get their flow
   * control answers on `$JS.FC.<stream>.hub-<site>.>`. The hub calls the site's JetStream API (`$JS.<site>.API`),
   * whose answers go to the hub's internal reply subjects (`$JSC.R.>`). The site reports on, and is asked on,
   * `$FABRIC.edge.<site>.>`; its agent and devices use the identity service; replies come on the site's inboxes.
   */
  leaf: {
    pub: { allow: [`$FABRIC.src.${SITE}.>`, `$FABRIC.edge.${SITE}.>`, "$FABRIC.id.>", `_INBOX.${SITE}.>`, "$JSC.R.>"] },
    sub: { allow: [`cmd.${SITE}.>`, `$JS.${SITE}.API.>`, `$JS.FC.*.hub-${SITE}.>`, `$FABRIC.edge.${SITE}.>`, `_INBOX.${SITE}.>`] },
    ...NO_LIMITS,
  },
  /**
   * A site's agent (`fabric-edge`), on the site's own server only (loopback): it keeps the site's streams and
   * their sourcing consumers (the site's JetStream API), asks the hub over the leaf link, reports, and runs the
   * site's pre-aggregation (reads its telemetry; writes window results, rejects and window state in KV). Minted
   * by the identity service for the site's leaf. What it sends never crosses to the hub but by sourcing.
   */
  "edge-agent": {
    pub: { allow: ["$JS.API.>", `$FABRIC.edge.${SITE}.>`, "$FABRIC.id.>", `telemetry.${SITE}.>`, `agg.*.${SITE}.>`, "rejected.>", "$KV.>", `_INBOX.${SITE}.>`] },
    sub: { allow: [`_INBOX.${SITE}.>`, `$FABRIC.edge.${SITE}.>`, `telemetry.${SITE}.>`] },
    src: ["127.0.0.1/32", "::1/128"],
    ...NO_LIMITS,
  },
  /**
   * A site's own MQTT ingress (`fabric-edge up --mqtt-port`), on the site's server only (loopback): like the
   * hub's ingress, a trusted component that publishes for the site's devices. Minted for the site's leaf.
   */
  "edge-ingress": { pub: { allow: [">"] }, sub: { allow: [">"] }, src: ["127.0.0.1/32", "::1/128"], ...NO_LIMITS },
  /** A backend service: the whole tenant account. */
  service: { pub: { allow: [">"] }, sub: { allow: [">"] }, ...NO_LIMITS },
  /** The MQTT ingress: a trusted fabric component that publishes for many devices. */
  ingress: { pub: { allow: [">"] }, sub: { allow: [">"] }, ...NO_LIMITS },
  /** A legacy MQTT device on nats-server's own MQTT listener: bearer JWT, MQTT connections only. */
  mqtt: { ...DEVICE_TEMPLATE, bearer_token: true, allowed_connection_types: ["MQTT"] },
  /** The hub's own processes (bootstrap, identity service): the whole account, apart from user roles. */
  hub: { pub: { allow: [">"] }, sub: { allow: [">"] }, ...NO_LIMITS },
  /** A factory credential: can ask the identity service for a nonce and a credential, nothing else. */
  bootstrap: {
    pub: { allow: ["$FABRIC.id.nonce", "$FABRIC.id.provision", "$FABRIC.id.exchange"] },
    sub: { allow: [`_INBOX.boot.${NAME}.>`] },
    ...NO_LIMITS,
  },
};

/** Inbox prefix a bootstrap credential uses. */
export function bootstrapInboxPrefix(name: string): string {
  return `_INBOX.boot.${name}`;
}

/** Roles whose users must carry a `site` tag. */
export const SITE_ROLES: ReadonlySet<string> = new Set<BuiltinRole>(["device", "leaf", "edge-agent", "edge-ingress", "mqtt", "bootstrap"]);

/** A custom role an operator adds: its name and template, validated. */
const subjectSchema = z.string().refine(isValidSubject, "not a valid NATS subject (dot-separated tokens, no spaces, '>' only last)");
const subjectListSchema = z.array(subjectSchema).min(1, "give at least one subject");

export const roleDefinitionSchema = z.strictObject({
  name: z.string().regex(TOKEN_PATTERN, "role names are lowercase letters, digits, '_' and '-'").max(64),
  pub: subjectListSchema.optional(),
  sub: subjectListSchema.optional(),
  siteScoped: z.boolean().default(false),
});
export type RoleDefinition = z.infer<typeof roleDefinitionSchema>;
export type RoleDefinitionInput = z.input<typeof roleDefinitionSchema>;

export interface TemplateContext {
  name: string;
  subject: string;
  accountName: string;
  accountSubject: string;
  tags: readonly string[];
  accountTags: readonly string[];
}

const MUSTACHE = /\{\{([^}]+)\}\}/g;

function valuesFor(op: string, ctx: TemplateContext): string[] | undefined {
  const o = op.trim();
  const lower = o.toLowerCase();
  if (lower === "name()") return [ctx.name];
  if (lower === "subject()") return [ctx.subject];
  if (lower === "account-name()") return [ctx.accountName];
  if (lower === "account-subject()") return [ctx.accountSubject];
  const tag = /^(account-tag|tag)\((.*)\)$/i.exec(o);
  if (tag !== null) {
    const prefix = `${(tag[2] ?? "").toLowerCase()}:`;
    const list = tag[1]?.toLowerCase() === "account-tag" ? ctx.accountTags : ctx.tags;
    return list.filter((t) => t.startsWith(prefix)).map((t) => t.slice(prefix.length));
  }
  return undefined;
}

/**
 * Expands a template's subjects the way nats-server does for a user of a scoped key: every combination of
 * tag values; a subject whose tag is missing is dropped (the server makes it an invalid subject).
 */
export function expandSubjects(list: readonly string[] | undefined, ctx: TemplateContext): string[] | undefined {
  if (list === undefined) return undefined;
  const out: string[] = [];
  for (const entry of list) {
    let variants = [entry];
    for (const m of entry.matchAll(MUSTACHE)) {
      const values = valuesFor(m[1] ?? "", ctx);
      if (values === undefined || values.length === 0) {
        variants = [];
        break;
      }
      variants = variants.flatMap((v) => values.map((val) => v.replace(m[0], val)));
    }
    out.push(...variants.filter((s) => s.length > 0 && !s.includes(" ")));
  }
  return out;
}

/** The effective permissions of a user under a template. */
export function applyTemplate(template: UserPermissionLimits, ctx: TemplateContext): UserPermissionLimits {
  const expand = (p: UserPermissionLimits["pub"]): UserPermissionLimits["pub"] =>
    p === undefined ? undefined : { allow: expandSubjects(p.allow, ctx), deny: expandSubjects(p.deny, ctx) };
  return { ...template, pub: expand(template.pub), sub: expand(template.sub) };
}
