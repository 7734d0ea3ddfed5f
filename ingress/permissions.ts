import type { UserPermissionLimits } from "../identity/index.js";
import { subjectMatches, subjectsIntersect, subjectWithin } from "./topics.js";

/**
 * The permissions of a device's credential, enforced by the ingress on every PUBLISH and SUBSCRIBE the way
 * nats-server enforces them on a NATS connection (the ingress itself connects with a broader credential).
 */
export function mayPublish(p: UserPermissionLimits, subject: string): boolean {
  const pub = p.pub;
  if (pub === undefined) return true;
  if (pub.allow !== undefined && !pub.allow.some((a) => subjectMatches(a, subject))) return false;
  return !(pub.deny ?? []).some((d) => subjectMatches(d, subject));
}

/** A subscription (which may hold wildcards) must lie within an allowed subject and touch no denied one. */
export function maySubscribe(p: UserPermissionLimits, subject: string): boolean {
  const sub = p.sub;
  if (sub === undefined) return true;
  if (sub.allow !== undefined && !sub.allow.some((a) => subjectWithin(subject, a))) return false;
  return !(sub.deny ?? []).some((d) => subjectsIntersect(d, subject));
}
