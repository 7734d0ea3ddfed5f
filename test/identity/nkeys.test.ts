import { describe, expect, it } from "vitest";
import { createUser, fromPublic, fromSeed } from "@nats-io/nkeys";
import { decode as decodeWithNatsJwt } from "@nats-io/jwt";
import { createKeyPair, keyPairFromSeed, verifySignature, isPublicKey, publicKeyKind, encodeJwt, decodeJwt, userClaimsSchema, InvalidKeyError } from "../../identity/index.js";

describe("nkeys on node:crypto", () => {
  it("produces keys @nats-io/nkeys reads, with identical signatures", () => {
    for (const kind of ["operator", "account", "user"] as const) {
      const kp = createKeyPair(kind);
      const theirs = fromSeed(new TextEncoder().encode(kp.seed));
      expect(theirs.getPublicKey()).toBe(kp.publicKey);
      const data = new TextEncoder().encode(`hello ${kind}`);
      expect(Buffer.from(kp.sign(data))).toEqual(Buffer.from(theirs.sign(data)));
      expect(fromPublic(kp.publicKey).verify(data, kp.sign(data))).toBe(true);
      expect(publicKeyKind(kp.publicKey)).toBe(kind);
    }
  });

  it("reads seeds @nats-io/nkeys made and verifies their signatures", () => {
    const theirs = createUser();
    const seed = new TextDecoder().decode(theirs.getSeed());
    const ours = keyPairFromSeed(seed);
    expect(ours.publicKey).toBe(theirs.getPublicKey());
    expect(ours.kind).toBe("user");
    const data = Buffer.from("payload");
    expect(verifySignature(theirs.getPublicKey(), data, theirs.sign(data))).toBe(true);
    expect(verifySignature(theirs.getPublicKey(), Buffer.from("other"), theirs.sign(data))).toBe(false);
  });

  it("refuses keys with a bad checksum, prefix or alphabet", () => {
    const kp = createKeyPair("user");
    const flipped = kp.publicKey.slice(0, 10) + (kp.publicKey[10] === "A" ? "B" : "A") + kp.publicKey.slice(11);
    expect(isPublicKey(flipped, "user")).toBe(false);
    expect(isPublicKey(kp.publicKey, "account")).toBe(false);
    expect(isPublicKey("not a key", "user")).toBe(false);
    expect(() => keyPairFromSeed("SUAAAA")).toThrow(InvalidKeyError);
    expect(() => keyPairFromSeed(kp.publicKey)).toThrow(/not a seed|checksum|length/);
  });

  it("signs JWTs that @nats-io/jwt decodes and verifies", () => {
    const account = createKeyPair("account");
    const user = createKeyPair("user");
    const jwt = encodeJwt(userClaimsSchema.parse({ jti: "x", iss: account.publicKey, iat: 1_700_000_000, sub: user.publicKey, name: "d1", nats: { type: "user", version: 2 } }), account);
    const claims = decodeWithNatsJwt<{ type: string }>(jwt);
    expect(claims.sub).toBe(user.publicKey);
    expect(claims.iss).toBe(account.publicKey);
    expect(claims.iat).toBe(1_700_000_000);
    expect(decodeJwt(jwt, userClaimsSchema).name).toBe("d1");
  });
});
