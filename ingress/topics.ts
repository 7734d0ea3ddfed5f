import { MAX_SUBJECT_BYTES } from "../fabric/core/index.js";

/**
 * MQTT topics and NATS subjects. The default mapping turns `a/b/c` into `a.b.c`. Characters a NATS token
 * cannot carry are percent-escaped so that every topic a device may legally use maps to a valid subject and
 * back again: `.` `%2E`, `*` `%2A`, `>` `%3E`, `%` `%25`, white space `%20` (and the like), and an empty
 * level (`a//b`, `/a`) `%00` (U+0000 is never in a topic).
 */
const ESCAPE = /[.*>%\s]/gu;

function escapeLevel(level: string): string {
  if (level === "") return "%00";
  // percent-encoding of the character's UTF-8 bytes, as encodeURIComponent does (which leaves . and * alone)
  return level.replace(ESCAPE, (c) => [...Buffer.from(c, "utf8")].map((b) => `%${b.toString(16).toUpperCase().padStart(2, "0")}`).join(""));
}

function unescapeToken(token: string): string {
  if (token === "%00") return "";
  if (!token.includes("%")) return token;
  try {
    return decodeURIComponent(token);
  } catch {
    return token; // a subject published outside MQTT with a bare '%'
  }
}

/** `a/b.c/` → `a.b%2Ec.%00` */
export function topicToSubject(topic: string): string {
  return topic.split("/").map(escapeLevel).join(".");
}

/** `a.b%2Ec.%00` → `a/b.c/` */
export function subjectToTopic(subject: string): string {
  return subject.split(".").map(unescapeToken).join("/");
}

/**
 * The NATS subjects to subscribe to for an MQTT filter: `+` is `*`, `#` is `>`; `a/#` also matches `a`
 * itself, so it needs `a` and `a.>`.
 */
export function filterToSubjects(filter: string): string[] {
  const levels = filter.split("/");
  const mapped = levels.map((l) => (l === "+" ? "*" : l === "#" ? ">" : escapeLevel(l)));
  if (levels[levels.length - 1] === "#" && levels.length > 1) {
    return [mapped.slice(0, -1).join("."), mapped.join(".")];
  }
  return [mapped.join(".")];
}

export type TopicProblem = string | undefined;

/** Why a topic name (of a PUBLISH) is invalid, or undefined. */
export function topicNameProblem(topic: string): TopicProblem {
  if (topic.length === 0) return "topic name is empty";
  if (topic.includes("+") || topic.includes("#")) return "topic name contains a wildcard";
  if (topic.includes("\u0000")) return "topic name contains U+0000";
  if (Buffer.byteLength(topicToSubject(topic), "utf8") > MAX_SUBJECT_BYTES) return `topic name is too long: at most ${MAX_SUBJECT_BYTES} bytes as a subject`;
  return undefined;
}

/** Why a topic filter (of a SUBSCRIBE) is invalid, or undefined. */
export function topicFilterProblem(filter: string): TopicProblem {
  if (filter.length === 0) return "topic filter is empty";
  if (filter.includes("\u0000")) return "topic filter contains U+0000";
  if (filterToSubjects(filter).some((s) => Buffer.byteLength(s, "utf8") > MAX_SUBJECT_BYTES)) return `topic filter is too long: at most ${MAX_SUBJECT_BYTES} bytes as a subject`;
  const levels = filter.split("/");
  for (let i = 0; i < levels.length; i++) {
    const l = levels[i] ?? "";
    if (l.includes("#") && (l !== "#" || i !== levels.length - 1)) return "'#' must be a whole level, the last one";
    if (l.includes("+") && l !== "+") return "'+' must be a whole level";
  }
  return undefined;
}

/** An MQTT 5 shared subscription `$share/<group>/<filter>`, or undefined. */
export function parseSharedFilter(filter: string): { group: string; filter: string } | undefined {
  if (!filter.startsWith("$share/")) return undefined;
  const rest = filter.slice("$share/".length);
  const i = rest.indexOf("/");
  if (i <= 0) return undefined;
  const group = rest.slice(0, i);
  if (group.includes("+") || group.includes("#")) return undefined;
  return { group, filter: rest.slice(i + 1) };
}

/** MQTT matching of a topic against a filter, with the rule that `$` topics are not matched by a leading wildcard. */
export function topicMatches(filter: string, topic: string): boolean {
  if (topic.startsWith("$") && (filter.startsWith("+") || filter.startsWith("#"))) return false;
  // MQTT's `#` also matches the parent level (`a/#` matches `a`): at least zero more levels
  return tokensMatch(filter.split("/"), topic.split("/"), "+", "#", 0);
}

/** NATS matching: does `pattern` (with `*` and `>`) match `subject`? */
export function subjectMatches(pattern: string, subject: string): boolean {
  return tokensMatch(pattern.split("."), subject.split("."), "*", ">", 1);
}

/** Token-wise matching with a one-token wildcard and a rest wildcard that needs `minRest` more tokens. */
function tokensMatch(pattern: readonly string[], tokens: readonly string[], one: string, rest: string, minRest: number): boolean {
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i];
    if (p === rest) return tokens.length >= i + minRest;
    if (i >= tokens.length) return false;
    if (p !== one && p !== tokens[i]) return false;
  }
  return pattern.length === tokens.length;
}

/** Is every subject that `inner` matches also matched by `outer`? (Both may hold wildcards.) */
export function subjectWithin(inner: string, outer: string): boolean {
  const a = inner.split(".");
  const b = outer.split(".");
  for (let i = 0; i < b.length; i++) {
    const o = b[i];
    if (o === ">") return a.length > i;
    const x = a[i];
    if (x === undefined) return false;
    if (x === ">") return false;
    if (o === "*") continue;
    if (x === "*" || x !== o) return false;
  }
  return a.length === b.length;
}

/** Do two subject patterns have any subject in common? */
export function subjectsIntersect(x: string, y: string): boolean {
  const a = x.split(".");
  const b = y.split(".");
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const s = a[i];
    const t = b[i];
    if (s === ">" || t === ">") return s !== undefined && t !== undefined;
    if (s === undefined || t === undefined) return false;
    if (s !== "*" && t !== "*" && s !== t) return false;
  }
  return true;
}
