import type { IdentityStatus, UserRecord } from "../index.js";

const iso = (sec: number | undefined): string => (sec === undefined ? "never" : new Date(sec * 1000).toISOString());

/** Text for `fabric-id ls`. */
export function renderUsers(accounts: { name: string; publicKey: string; system: boolean; roles: Record<string, string>; users: Omit<UserRecord, "jwt">[] }[]): string {
  const lines: string[] = [];
  for (const a of accounts) {
    lines.push(`account ${a.name}${a.system ? " (system)" : ""} ${a.publicKey}`);
    lines.push(`  roles: ${Object.keys(a.roles).join(", ")}`);
    for (const u of a.users.sort((x, y) => x.role.localeCompare(y.role) || x.name.localeCompare(y.name))) {
      const state = u.revokedAt !== undefined ? "revoked" : u.expiresAt !== undefined && u.expiresAt * 1000 < Date.now() ? "expired" : "active";
      lines.push(`  ${u.role.padEnd(9)} ${u.name.padEnd(24)} ${(u.site ?? "-").padEnd(12)} ${u.publicKey} ${state} expires ${iso(u.expiresAt)}`);
    }
  }
  return lines.join("\n");
}

/** Text for `fabric-id status`. */
export function renderStatus(s: IdentityStatus): string {
  const lines = [`operator ${s.operator}`, `hub ${s.hubUrls.join(", ") || "(unknown)"}: ${s.hubReachable ? "reachable" : `NOT reachable (${s.hubError ?? ""})`}`];
  for (const a of s.accounts) {
    lines.push(
      `account ${a.name}: jwt iat ${a.jwtIat}${a.pendingPush ? " (PENDING PUSH)" : ""}, ${a.revocations} revocation(s), ${a.jwtBytes} bytes, headroom ${a.headroomBytes} bytes`,
    );
    for (const v of a.servers) lines.push(`  server ${v.server}: iat ${v.iat ?? "not loaded"}${v.current ? "" : v.iat === undefined ? "" : " (STALE)"}`);
  }
  lines.push(s.expiringSoon.length === 0 ? "no credentials expire soon" : "expiring soon:");
  for (const u of s.expiringSoon) lines.push(`  ${u.account}/${u.role}/${u.name} ${u.publicKey} ${iso(u.expiresAt)}`);
  return lines.join("\n");
}
