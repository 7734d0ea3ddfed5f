import { InvalidInputError } from "./errors.js";

/** A subject token the fabric allows in names: site, device, metric, account, role. */
export const TOKEN_PATTERN = /^[a-z0-9_-]+$/;
export const MAX_TOKEN_LENGTH = 64;

/** Throws InvalidInputError naming `what` when `value` is not a valid fabric token. */
export function assertToken(value: string, what: string): string {
  if (value.length === 0 || value.length > MAX_TOKEN_LENGTH || !TOKEN_PATTERN.test(value)) {
    throw new InvalidInputError(`${what} ${JSON.stringify(value)} is invalid: use 1-${MAX_TOKEN_LENGTH} of lowercase letters, digits, '_' and '-'`, { fields: { [what]: value } });
  }
  return value;
}

/** True when `value` is a valid fabric token (see assertToken). */
export function isToken(value: string): boolean {
  return value.length > 0 && value.length <= MAX_TOKEN_LENGTH && TOKEN_PATTERN.test(value);
}

/** Subjects of the fabric's contracts (DESIGN.md). */
export const subjects = {
  telemetry: (site: string, device: string, metric: string) => `telemetry.${site}.${device}.${metric}`,
  events: (site: string, device: string, type: string) => `events.${site}.${device}.${type}`,
  command: (site: string, device: string, name: string) => `cmd.${site}.${device}.${name}`,
  aggregate: (window: string, site: string, device: string, metric: string) => `agg.${window}.${site}.${device}.${metric}`,
  /** The identity service: nonce, provisioning and renewal requests. */
  identity: {
    nonce: "$FABRIC.id.nonce",
    provision: "$FABRIC.id.provision",
    renew: "$FABRIC.id.renew",
    /** A site's leaf asks for the trust it needs offline (operator and account JWTs) and a sync credential. */
    site: "$FABRIC.id.site",
    /** An identity provider's token exchanged for a fabric credential (issue 14). */
    exchange: "$FABRIC.id.exchange",
  },
  /** Edge sites: what a site's agent reports and asks, and what the hub's sourcing receives. */
  edge: {
    /** The site's health and backlog (JSON), published every few seconds and answered on request. */
    status: (site: string) => `$FABRIC.edge.${site}.status`,
    /** Every site's status reports (the hub listens here). */
    allStatus: "$FABRIC.edge.*.status",
    /** The site asks the hub to source its streams. */
    register: (site: string) => `$FABRIC.edge.${site}.register`,
    /** The hub tells a site its account JWTs changed (a revocation): the site fetches them at once. */
    trust: (site: string) => `$FABRIC.edge.${site}.trust`,
    allRegister: "$FABRIC.edge.*.register",
    /** The site asks the hub to restart its sources of some streams: their backlog waits and the hub is not listening. */
    restart: (site: string) => `$FABRIC.edge.${site}.restart`,
    allRestart: "$FABRIC.edge.*.restart",
    /** Where the site's durable sourcing consumer delivers one of its streams to the hub. */
    deliver: (site: string, stream: string) => `$FABRIC.src.${site}.${stream.toLowerCase()}`,
  },
} as const;

/** The durable consumer, on a site's edge stream, that the hub's stream sources from (its name carries the site). */
export function edgeSourceConsumer(site: string): string {
  return `hub-${site}`;
}

/**
 * The longest subject the fabric accepts, in UTF-8 bytes. nats-server closes a connection whose protocol line
 * (`HPUB <subject> <reply> <sizes>`) exceeds its max_control_line (4 KiB by default): a longer subject must be
 * refused before it reaches NATS, or one caller's bad input would cost every other user of that connection.
 */
export const MAX_SUBJECT_BYTES = 1_024;

/**
 * Why `subject` is not a valid NATS subject (or permission subject), or undefined: dot-separated non-empty
 * tokens without white space or control characters, `*` and `>` only as whole tokens, `>` only last, at most
 * MAX_SUBJECT_BYTES.
 */
export function subjectProblem(subject: string): string | undefined {
  if (subject.length === 0) return "is empty";
  if (Buffer.byteLength(subject, "utf8") > MAX_SUBJECT_BYTES) return `is longer than ${MAX_SUBJECT_BYTES} bytes`;
  // eslint-disable-next-line no-control-regex
  if (/[\s\x00-\x1f\x7f]/u.test(subject)) return "contains white space or a control character";
  const tokens = subject.split(".");
  for (const [i, t] of tokens.entries()) {
    if (t.length === 0) return "has an empty token";
    if (t.includes(">") && (t !== ">" || i !== tokens.length - 1)) return "has '>' other than as its last token";
    if (t.includes("*") && t !== "*") return "has '*' other than as a whole token";
  }
  return undefined;
}

/** True for a valid NATS subject (see subjectProblem). */
export function isValidSubject(subject: string): boolean {
  return subjectProblem(subject) === undefined;
}

/** A literal subject (no wildcards) or InvalidInputError naming `field` and what is wrong. */
export function assertLiteralSubject(subject: string, field: string): string {
  const problem = subjectProblem(subject) ?? (subject.split(".").some((t) => t === "*" || t === ">") ? "holds a wildcard" : undefined);
  if (problem !== undefined) throw new InvalidInputError(`${field} ${JSON.stringify(subject.length > 80 ? `${subject.slice(0, 80)}…` : subject)} ${problem}`, { fields: { [field]: subject.slice(0, 80) } });
  return subject;
}
