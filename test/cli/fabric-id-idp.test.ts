/** `fabric-id idp add|ls|rm` and `revoke external` from the command line, and their refusals of bad input. */
import { statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { initKeystore, Keystore, readProviders, readRevokedSubjects } from "../../identity/index.js";
import { Harness, runCli } from "../harness/index.js";

const h = new Harness();
afterAll(() => h.dispose());

describe("fabric-id idp", () => {
  it("adds a provider from YAML, lists it, refuses bad files naming the field, revokes a subject, removes it", async () => {
    const dir = h.tempDir("idp-");
    const store = join(dir, "keys");
    initKeystore(store);
    const file = join(dir, "corp.yaml");
    writeFileSync(
      file,
      ["name: corp", "issuer: https://login.example.com/realms/plant", "jwksUri: https://login.example.com/certs", "audiences: [fabric]", "rules:", "  - when: { groups: ops }", "    role: service", '    name: "{preferred_username}"'].join("\n"),
    );
    const add = await runCli("fabric-id", ["idp", "add", file, "--store", store]);
    expect(add.code, add.stderr).toBe(0);
    expect(readProviders(Keystore.open(store))).toEqual([expect.objectContaining({ name: "corp", algorithms: ["RS256", "ES256", "EdDSA"], maxTtlSec: 3_600 })]);
    expect(statSync(join(store, "external", "providers.json")).mode & 0o777).toBe(0o600);
    const ls = await runCli("fabric-id", ["idp", "ls", "--json", "--store", store]);
    expect((JSON.parse(ls.stdout) as { name: string }[]).map((p) => p.name)).toEqual(["corp"]);

    const bad: [string, RegExp][] = [
      ['name: corp2\nissuer: not a url\njwksUri: https://x/certs\naudiences: [a]\nrules: [{ role: service }]', /issuer/],
      ["name: corp3\nissuer: https://y/\njwksUri: https://y/certs\naudiences: [a]\nalgorithms: [none]\nrules: [{ role: service }]", /algorithms/],
      ["name: corp4\nissuer: https://z/\njwksUri: https://z/certs\naudiences: [a]\nalgorithms: [HS256]\nrules: [{ role: service }]", /algorithms/],
      ["name: corp5\nissuer: https://w/\njwksUri: https://w/certs\naudiences: []\nrules: [{ role: service }]", /audiences/],
      ["name: corp6\nissuer: https://v/\njwksUri: https://v/certs\naudiences: [a]\nrules: []", /rules/],
      ["name: corp7\nissuer: https://login.example.com/realms/plant\njwksUri: https://v/certs\naudiences: [a]\nrules: [{ role: service }]", /provider corp already/],
    ];
    for (const [text, message] of bad) {
      const f = join(dir, "bad.yaml");
      writeFileSync(f, text);
      const r = await runCli("fabric-id", ["idp", "add", f, "--store", store]);
      expect(r.code, text).not.toBe(0);
      expect(r.stderr, text).toMatch(message);
    }
    expect(readProviders(Keystore.open(store))).toHaveLength(1);

    // the only provider needs no --provider
    const rev = await runCli("fabric-id", ["revoke", "external", "user-42", "--store", store, "--server", "nats://127.0.0.1:1"]);
    expect(rev.code, rev.stderr).toBe(0);
    expect(readRevokedSubjects(Keystore.open(store))).toEqual([expect.objectContaining({ provider: "corp", subject: "user-42" })]);
    const unknown = await runCli("fabric-id", ["revoke", "external", "x", "--provider", "nope", "--store", store]);
    expect(unknown.stderr).toMatch(/no identity provider "nope"/);

    expect((await runCli("fabric-id", ["idp", "rm", "corp", "--store", store])).code).toBe(0);
    expect((await runCli("fabric-id", ["idp", "rm", "corp", "--store", store])).code).toBe(1);
    expect(readProviders(Keystore.open(store))).toEqual([]);
  });
});
