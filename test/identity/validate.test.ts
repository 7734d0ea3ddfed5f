import { afterAll, describe, expect, it } from "vitest";
import {
  createKeyPair,
  encodeJwt,
  initKeystore,
  issueUser,
  revokeUsers,
  rotateRole,
  userClaimsSchema,
  validateUserJwt,
  type CredentialErrorCode,
} from "../../identity/index.js";
import { Harness } from "../harness/index.js";

const h = new Harness();
afterAll(() => h.dispose());

function codeOf(fn: () => unknown): CredentialErrorCode | undefined {
  try {
    fn();
  } catch (err) {
    return (err as { code?: CredentialErrorCode }).code;
  }
  return undefined;
}

function tamper(jwt: string, edit: (claims: Record<string, unknown>) => void): string {
  const [hd, body, sig] = jwt.split(".") as [string, string, string];
  const claims = JSON.parse(Buffer.from(body, "base64url").toString()) as Record<string, unknown>;
  edit(claims);
  return `${hd}.${Buffer.from(JSON.stringify(claims)).toString("base64url")}.${sig}`;
}

describe("user JWT chain validation", () => {
  const { keystore: ks } = initKeystore(h.tempDir());

  it("accepts a device credential and expands its role template", () => {
    const r = issueUser(ks, { account: "fleet", role: "device", name: "pump-1", site: "plant-a" });
    const v = validateUserJwt(r.jwt, ks.trustAnchors());
    expect(v.role).toBe("device");
    expect(v.site).toBe("plant-a");
    expect(v.permissions.pub?.allow).toContain("telemetry.plant-a.pump-1.>");
    expect(v.permissions.sub?.allow).toContain("cmd.plant-a.pump-1.>");
    expect(v.permissions.pub?.allow?.some((s) => s.includes("{{"))).toBe(false);
  });

  it("refuses tampered, forged, expired and not-yet-valid JWTs, with stable codes", () => {
    const r = issueUser(ks, { account: "fleet", role: "device", name: "pump-2", site: "plant-a" });
    const trust = ks.trustAnchors();
    expect(codeOf(() => validateUserJwt(tamper(r.jwt, (c) => (c["name"] = "pump-3")), trust))).toBe("FABRIC_ERR_CREDENTIAL_SIGNATURE");
    expect(codeOf(() => validateUserJwt("a.b", trust))).toBe("FABRIC_ERR_CREDENTIAL_MALFORMED");

    // forged: a well-formed JWT signed by a key the account does not know
    const rogue = createKeyPair("account");
    const account = ks.account("fleet");
    const forged = encodeJwt(
      userClaimsSchema.parse({ jti: "x", iss: rogue.publicKey, iat: Math.floor(Date.now() / 1000), sub: createKeyPair("user").publicKey, name: "x", nats: { type: "user", version: 2, issuer_account: account.publicKey, tags: ["site:plant-a"] } }),
      rogue,
    );
    expect(codeOf(() => validateUserJwt(forged, trust))).toBe("FABRIC_ERR_CREDENTIAL_UNTRUSTED_ISSUER");

    const expired = issueUser(ks, { account: "fleet", role: "device", name: "pump-4", site: "plant-a", expiresInSec: 60 });
    expect(codeOf(() => validateUserJwt(expired.jwt, trust, Date.now() + 61_000))).toBe("FABRIC_ERR_CREDENTIAL_EXPIRED");
    expect(codeOf(() => validateUserJwt(expired.jwt, trust, Date.now() - 3_600_000))).toBe(undefined);

    const signer = ks.keyPair(account.roles["device"]?.key ?? "");
    const future = encodeJwt(
      userClaimsSchema.parse({ jti: "x", iss: signer.publicKey, iat: Math.floor(Date.now() / 1000), nbf: Math.floor(Date.now() / 1000) + 3600, sub: createKeyPair("user").publicKey, name: "later", nats: { type: "user", version: 2, issuer_account: account.publicKey, tags: ["site:plant-a"] } }),
      signer,
    );
    expect(codeOf(() => validateUserJwt(future, trust))).toBe("FABRIC_ERR_CREDENTIAL_NOT_YET_VALID");
  });

  it("refuses revoked users and users of a rotated role key", () => {
    const a = issueUser(ks, { account: "fleet", role: "device", name: "pump-5", site: "plant-b" });
    const b = issueUser(ks, { account: "fleet", role: "service", name: "svc-1" });
    revokeUsers(ks, "fleet", "pump-5", "device");
    expect(codeOf(() => validateUserJwt(a.jwt, ks.trustAnchors()))).toBe("FABRIC_ERR_CREDENTIAL_REVOKED");
    expect(() => issueUser(ks, { account: "fleet", role: "device", name: "pump-5", site: "plant-b", publicKey: a.record.publicKey })).toThrow(/revoked/);
    const rot = rotateRole(ks, "fleet", "service");
    expect(rot.invalidated).toBeGreaterThanOrEqual(1);
    expect(codeOf(() => validateUserJwt(b.jwt, ks.trustAnchors()))).toBe("FABRIC_ERR_CREDENTIAL_UNTRUSTED_ISSUER");
  });

  it("makes every account JWT strictly newer than the last", () => {
    const before = ks.account("fleet").jwtIat;
    revokeUsers(ks, "fleet", createKeyPair("user").publicKey);
    revokeUsers(ks, "fleet", createKeyPair("user").publicKey);
    const after = ks.account("fleet").jwtIat;
    expect(after).toBeGreaterThanOrEqual(before + 2);
  });

  it("refuses names and sites that are not subject tokens", () => {
    expect(() => issueUser(ks, { account: "fleet", role: "device", name: "Pump.1", site: "plant-a" })).toThrow(/name "Pump.1" is invalid/);
    expect(() => issueUser(ks, { account: "fleet", role: "device", name: "p1", site: "a>" })).toThrow(/site "a>" is invalid/);
    expect(() => issueUser(ks, { account: "fleet", role: "device", name: "p1" })).toThrow(/needs --site/);
    expect(() => issueUser(ks, { account: "fleet", role: "nope", name: "p1" })).toThrow(/no role "nope"/);
  });
});
