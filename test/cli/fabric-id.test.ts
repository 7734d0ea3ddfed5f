import { afterAll, describe, expect, it } from "vitest";
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createKeyPair } from "../../identity/index.js";
import { Harness, modesBelow, runCli, SEED_PATTERN, type CliResult } from "../harness/index.js";

const h = new Harness();
afterAll(() => h.dispose());

describe("fabric-id", () => {
  const home = h.tempDir("fabric-home-");
  const work = h.tempDir("fabric-work-");
  const outputs: CliResult[] = [];
  const id = async (...args: string[]): Promise<CliResult> => {
    const r = await runCli("fabric-id", args, { env: { FABRIC_HOME: home }, cwd: work });
    outputs.push(r);
    return r;
  };

  it("init creates a private keystore: directories 0700, files 0600", async () => {
    const r = await id("init", "--operator", "acme", "--account", "fleet", "--account", "lab", "--json");
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as { operator: string; accounts: { name: string }[] };
    expect(out.operator).toMatch(/^O[A-Z2-7]{55}$/);
    expect(out.accounts.map((a) => a.name)).toEqual(["fleet", "lab"]);
    const modes = modesBelow(join(home, "keys"));
    expect(modes.length).toBeGreaterThan(10);
    for (const m of modes) expect(m.mode, m.path).toBe(m.dir ? 0o700 : 0o600);
    const again = await id("init");
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/already exists/);
  });

  it("issues a device .creds file 0600 and never prints the seed", async () => {
    const r = await id("issue", "device", "pump-1", "--site", "plant-a", "--expiry", "30d", "-o", "pump-1.creds");
    expect(r.code).toBe(0);
    const path = join(work, "pump-1.creds");
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(readFileSync(path, "utf8")).toMatch(SEED_PATTERN);
    expect(r.stdout + r.stderr).not.toMatch(SEED_PATTERN);
    // an existing file is never overwritten
    const again = await id("issue", "device", "pump-2", "--site", "plant-a", "-o", "pump-1.creds");
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/already exists/);
  });

  it("with --public-key returns only the JWT: the device keeps its seed", async () => {
    const kp = createKeyPair("user");
    const r = await id("issue", "device", "pump-3", "--site", "plant-a", "--public-key", kp.publicKey);
    expect(r.code).toBe(0);
    const jwt = r.stdout.trim();
    expect(jwt.split(".")).toHaveLength(3);
    const claims = JSON.parse(Buffer.from(jwt.split(".")[1] ?? "", "base64url").toString()) as { sub: string; nats: { tags: string[] } };
    expect(claims.sub).toBe(kp.publicKey);
    expect(claims.nats.tags).toContain("site:plant-a");
    expect(r.stdout + r.stderr).not.toMatch(SEED_PATTERN);
  });

  it("issues leaf, service and mqtt credentials, and bootstrap tokens", async () => {
    expect((await id("issue", "leaf", "plant-a", "-o", "leaf.creds")).code).toBe(0);
    expect((await id("issue", "service", "billing", "-o", "svc.creds")).code).toBe(0);
    expect((await id("issue", "mqtt", "old-meter", "--site", "plant-a", "-o", "mqtt.creds")).code).toBe(0);
    const b = await id("issue", "bootstrap", "--site", "plant-a", "--count", "3", "--ttl", "1h", "-o", "boot.creds", "--json");
    expect(b.code).toBe(0);
    const out = JSON.parse(b.stdout) as { tokens: string[] };
    expect(out.tokens).toHaveLength(3);
    expect(statSync(join(work, "boot.creds")).mode & 0o777).toBe(0o600);
    for (const f of ["leaf.creds", "svc.creds", "mqtt.creds"]) expect(statSync(join(work, f)).mode & 0o777).toBe(0o600);
  });

  it("lists and describes what was issued", async () => {
    const ls = await id("ls", "--json");
    expect(ls.code).toBe(0);
    const data = JSON.parse(ls.stdout) as { accounts: { name: string; users: { name: string; role: string; site?: string }[] }[] };
    const fleet = data.accounts.find((a) => a.name === "fleet");
    expect(fleet?.users.map((u) => `${u.role}:${u.name}`).sort()).toEqual(expect.arrayContaining(["device:pump-1", "device:pump-3", "leaf:plant-a", "service:billing", "mqtt:old-meter"]));
    const d = await id("describe", "device", "pump-1", "--json");
    expect(d.code).toBe(0);
    const desc = JSON.parse(d.stdout) as { claims: { name: string; exp: number } };
    expect(desc.claims.name).toBe("pump-1");
    expect(desc.claims.exp).toBeGreaterThan(Date.now() / 1000 + 29 * 86_400);
    const acc = await id("describe", "account", "fleet", "--json");
    const accClaims = JSON.parse(acc.stdout) as { claims: { nats: { signing_keys: { role: string }[] } } };
    expect(accClaims.claims.nats.signing_keys.map((k) => k.role)).toEqual(expect.arrayContaining(["device", "leaf", "service", "ingress", "mqtt"]));
    const raw = await id("describe", "operator", "--raw");
    expect(raw.stdout.trim().split(".")).toHaveLength(3);
  });

  it("queues a revocation when the hub is unreachable and says so", async () => {
    const r = await id("revoke", "device", "pump-1", "--server", "nats://127.0.0.1:1");
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/queued/);
    const st = await id("status", "--json", "--server", "nats://127.0.0.1:1");
    expect(st.code).toBe(0);
    const status = JSON.parse(st.stdout) as { hubReachable: boolean; accounts: { name: string; pendingPush: boolean; revocations: number }[] };
    expect(status.hubReachable).toBe(false);
    const fleet = status.accounts.find((a) => a.name === "fleet");
    expect(fleet?.pendingPush).toBe(true);
    expect(fleet?.revocations).toBe(1);
    // re-issuing for the revoked key is refused
    const key = (JSON.parse((await id("ls", "--json")).stdout) as { accounts: { users: { name: string; publicKey: string }[] }[] }).accounts
      .flatMap((a) => a.users)
      .find((u) => u.name === "pump-1")?.publicKey;
    const again = await id("issue", "device", "pump-1", "--site", "plant-a", "--public-key", key ?? "");
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/FABRIC_ERR_KEY_REVOKED/);
  });

  it("gives clear errors for bad input", async () => {
    const bad = await id("issue", "device", "Pump.1", "--site", "plant-a");
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/name "Pump.1" is invalid/);
    const noSite = await id("issue", "device", "p9");
    expect(noSite.code).toBe(2);
    expect(noSite.stderr).toMatch(/--site/);
    const badExpiry = await id("issue", "device", "p9", "--site", "s", "--expiry", "soon");
    expect(badExpiry.code).toBe(2);
    expect(badExpiry.stderr).toMatch(/--expiry "soon" is not a duration/);
    const badRole = await id("issue", "user", "x", "--role", "ghost");
    expect(badRole.code).toBe(2);
    expect(badRole.stderr).toMatch(/no role "ghost"/);
    expect(existsSync(join(work, "device-Pump.1.creds"))).toBe(false);
  });

  it("refuses a broken keystore with a clear error and leaves it as it was", async () => {
    const other = h.tempDir("fabric-broken-");
    expect((await runCli("fabric-id", ["init", "--store", other])).code).toBe(0);
    writeFileSync(join(other, "store.json"), "{ not json");
    const r = await runCli("fabric-id", ["ls", "--store", other]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/FABRIC_ERR_KEYSTORE_CORRUPT/);
    expect(r.stderr).toMatch(/store\.json/);
    expect(readFileSync(join(other, "store.json"), "utf8")).toBe("{ not json");
    const missing = await runCli("fabric-id", ["ls", "--store", join(other, "nope")]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/no keystore .*fabric-id init/);
  });

  it("printed no seed in any output", () => {
    expect(outputs.length).toBeGreaterThan(10);
    for (const r of outputs) expect(r.stdout + r.stderr).not.toMatch(SEED_PATTERN);
  });
});
