import type { UserPermissionLimits } from "../../identity/index.js";
import { subjectsIntersect, subjectWithin } from "../../ingress/topics.js";
import { InvalidInputError, isValidSubject } from "../core/index.js";
import type { Caller } from "./auth.js";
import { assertMaySubscribe } from "./context.js";
import { GatewayError } from "./errors.js";

/** The most filter subjects a consumer takes. */
export const MAX_FILTERS = 32;

/**
 * The subjects both patterns match, as one pattern (token-wise: a literal beats `*`, and `>` takes the other's
 * rest), or undefined when they have none in common.
 */
export function intersectSubjects(x: string, y: string): string | undefined {
  const a = x.split(".");
  const b = y.split(".");
  const out: string[] = [];
  for (let i = 0; ; i++) {
    const s = a[i];
    const t = b[i];
    if (s === undefined && t === undefined) return out.join(".");
    if (s === ">" && t === ">") return [...out, ">"].join(".");
    if (s === ">") return t === undefined ? undefined : [...out, ...b.slice(i)].join(".");
    if (t === ">") return s === undefined ? undefined : [...out, ...a.slice(i)].join(".");
    if (s === undefined || t === undefined) return undefined;
    if (s === "*") out.push(t);
    else if (t === "*" || s === t) out.push(s);
    else return undefined;
  }
}

/** The patterns without repeats and without those another one contains. */
export function withoutContained(patterns: readonly string[]): string[] {
  const unique = [...new Set(patterns)];
  return unique.filter((p, i) => !unique.some((q, j) => j !== i && subjectWithin(p, q) && !(subjectWithin(q, p) && j > i)));
}

/**
 * What "the whole stream within the caller's permissions" is as filter subjects: the intersections of the
 * stream's subjects with the subjects the caller may subscribe to, less those contained in others. Throws
 * PERMISSION_DENIED when the caller may read none of the stream, and INVALID_ARGUMENT when it cannot be said
 * with filters (a deny rule excludes part of one, the pieces overlap, or there are too many).
 */
export function wholeStreamFilters(permissions: UserPermissionLimits, streamSubjects: readonly string[], stream: string, field: string, who: string): string[] {
  const allow = permissions.sub?.allow ?? [">"];
  const deny = permissions.sub?.deny ?? [];
  // a stream without subjects of its own (mirrors, sources only) holds whatever it was given
  const subjects = streamSubjects.length === 0 ? [">"] : streamSubjects;
  const pieces: string[] = [];
  for (const s of subjects) {
    for (const a of allow) {
      const x = intersectSubjects(s, a);
      if (x !== undefined) pieces.push(x);
    }
  }
  const readable: string[] = [];
  for (const p of withoutContained(pieces)) {
    const d = deny.find((d) => subjectsIntersect(d, p));
    if (d === undefined) readable.push(p);
    else if (!subjectWithin(p, d)) {
      throw new InvalidInputError(`${field}: the credential of ${who} may read ${p} of stream ${stream} but for ${d} (denied): filters cannot exclude subjects, give filter_subjects`);
    }
  }
  if (readable.length === 0) throw new GatewayError("FABRIC_ERR_PERMISSION_DENIED", `the credential of ${who} may read nothing of stream ${stream} (subjects ${subjects.join(", ")})`);
  for (const [i, p] of readable.entries()) {
    const q = readable.slice(i + 1).find((q) => subjectsIntersect(p, q));
    if (q !== undefined) throw new InvalidInputError(`${field}: what the credential of ${who} may read of stream ${stream} (${p} and ${q}) overlaps, which JetStream filters cannot be: give filter_subjects`);
  }
  if (readable.length > MAX_FILTERS) throw new InvalidInputError(`${field}: what the credential of ${who} may read of stream ${stream} needs ${readable.length} filters, more than ${MAX_FILTERS}: give filter_subjects`);
  return readable;
}

/** Filters as given: at most 32, valid subjects, no repeats, each one the caller may read (checked before any lookup). */
export function assertFilters(caller: Caller, filters: readonly string[], field = "filter_subjects"): string[] {
  if (filters.length > MAX_FILTERS) throw new InvalidInputError(`${field} holds more than ${MAX_FILTERS} subjects`);
  for (const f of filters) if (!isValidSubject(f)) throw new InvalidInputError(`${field}: ${JSON.stringify(f)} is not a valid NATS subject`);
  if (new Set(filters).size !== filters.length) throw new InvalidInputError(`${field} repeats a subject`);
  for (const f of filters) assertMaySubscribe(caller, f);
  return [...filters];
}

/**
 * The filters of a consumer on `stream`: the given ones, each of which must overlap the stream's subjects (a
 * filter the stream can never hold is INVALID_ARGUMENT), or with none the whole stream within the caller's
 * permissions.
 */
export function resolveFilters(caller: Caller, filters: readonly string[], stream: string, streamSubjects: readonly string[], field = "filter_subjects"): string[] {
  if (filters.length === 0) return wholeStreamFilters(caller.permissions, streamSubjects, stream, field, caller.name);
  if (streamSubjects.length === 0) return [...filters];
  for (const f of filters) {
    if (!streamSubjects.some((s) => subjectsIntersect(s, f))) {
      throw new InvalidInputError(`${field}: ${f} is outside stream ${stream}, which holds ${streamSubjects.join(", ")}: the filter could never match`);
    }
  }
  return [...filters];
}
