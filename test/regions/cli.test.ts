/**
 * `fabric region link|unlink|ls` as an operator runs them against running regions, their refusals of bad input,
 * and `fabric config hub --region --link` for a multi-host region.
 */
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jetstreamManager } from "@nats-io/jetstream";
import { pollUntil } from "../../fabric/core/index.js";
import { readRegionLinks } from "../../fabric/hub/index.js";
import { initKeystore, Keystore, linkAccountName } from "../../identity/index.js";
import { Harness, runCli } from "../harness/index.js";
import { startTestRegions, type TestRegions } from "./region-helpers.js";

const h = new Harness();
let t: TestRegions;

afterAll(() => h.dispose());
beforeAll(async () => {
  t = await startTestRegions(h, ["a", "b"], []);
}, 60_000);

const data = (r: string): string => t.regions[r]?.hub.dataDir ?? "";

describe("fabric region", () => {
  it("refuses bad input naming what is wrong, and changes nothing", async () => {
    const cases: [string[], RegExp][] = [
      [["region", "link", "a", "--url", "nats-leaf://127.0.0.1:1", "--data", data("a")], /cannot link to itself/],
      [["region", "link", "B!", "--data", data("a")], /peer "B!" is invalid/],
      [["region", "link", "hub", "--data", data("a")], /reserved/],
      [["region", "link", "b", "--url", "http://x", "--data", data("a")], /urls.*leaf URL/],
      [["region", "link", "b", "--stream", "logs", "--data", data("a")], /events, aggregates or telemetry/],
      [["region", "link", "b", "--stream", "telemetry=events.>", "--data", data("a")], /not within telemetry/],
      [["region", "link", "b", "--data", h.tempDir("no-hub-")], /no hub at/],
    ];
    for (const [args, message] of cases) {
      const r = await runCli("fabric", args);
      expect(r.code, args.join(" ")).not.toBe(0);
      expect(r.stderr, args.join(" ")).toMatch(message);
    }
    expect(readRegionLinks(data("a"))).toEqual([]);
  });

  it("links two running regions from the command line, shows the link, and unlinks it (its credential revoked)", async () => {
    const proxyPort = t.regions["b"]?.hub.nodes[0]?.ports.leafnode ?? 0;
    const dial = await runCli("fabric", ["region", "link", "b", "--url", `nats-leaf://127.0.0.1:${proxyPort}`, "--stream", "events", "--stream", "telemetry=telemetry.s1.>", "--data", data("a")]);
    expect(dial.code, dial.stderr).toBe(0);
    const accept = await runCli("fabric", ["region", "link", "a", "--stream", "events", "--stream", "telemetry=telemetry.s1.>", "--data", data("b")]);
    expect(accept.code, accept.stderr).toBe(0);
    // the hubs apply their links files by themselves (they watch them)
    const links = await t.waitLinked("a");
    expect(links.map((l) => [l.peer, l.dials, l.streams.map((s) => s.copy)])).toEqual([["b", true, ["REGION_b_EVENTS", "REGION_b_TELEMETRY"]]]);
    expect((await t.waitLinked("b")).map((l) => [l.peer, l.dials])).toEqual([["a", false]]);
    const a = await t.service("a");
    const consumer = await (await jetstreamManager(a)).consumers.info("TELEMETRY", "region-b");
    expect(consumer.config.filter_subject).toBe("telemetry.s1.>");

    const ls = await runCli("fabric", ["region", "ls", "--json", "--store", t.regions["a"]?.hub.keystoreDir ?? "", "--data", data("a"), "--server", t.regions["a"]?.url ?? ""]);
    expect(JSON.parse(ls.stdout)).toEqual([expect.objectContaining({ peer: "b", dials: true, up: true })]);

    const unlink = await runCli("fabric", ["region", "unlink", "b", "--data", data("a")]);
    expect(unlink.code, unlink.stderr).toBe(0);
    const ks = t.regions["a"]?.ks;
    await pollUntil(() => ks?.users("fleet").find((u) => u.name === "region-link-a-b")?.revokedAt !== undefined, { timeoutMs: 10_000, what: "the link credential revoked" });
    await pollUntil(async () => ((await (await jetstreamManager(a)).consumers.info("EVENTS", "region-b").catch(() => undefined)) === undefined ? true : undefined), { timeoutMs: 10_000, what: "a's consumer for b deleted" });
    expect(ks?.storeFile().region?.dials).toEqual([]);
    const again = await runCli("fabric", ["region", "unlink", "b", "--data", data("a")]);
    expect(again.code).toBe(1);
  }, 60_000);

  it("fabric config hub --region --link: configs in the region's domain dialing the peer with a 0600 credential", async () => {
    const keys = join(h.tempDir("region-config-"), "keys");
    initKeystore(keys);
    const outDir = h.tempDir("region-configs-");
    const r = await runCli("fabric", ["config", "hub", "--hosts", "h1", "h2", "h3", "--store", keys, "--out", outDir, "--region", "us", "--link", "emea=nats-leaf://emea.example.com:7422"]);
    expect(r.code, r.stderr).toBe(0);
    const config = JSON.parse(readFileSync(join(outDir, "hub-1.conf"), "utf8").split("\n").slice(1).join("\n")) as {
      jetstream: { domain: string };
      leafnodes: { remotes: { urls: string[]; account: string; credentials: string }[] };
    };
    const ks = Keystore.open(keys);
    expect(config.jetstream.domain).toBe("us");
    expect(config.leafnodes.remotes).toEqual([{ urls: ["nats-leaf://emea.example.com:7422"], account: ks.account(linkAccountName("emea")).publicKey, credentials: "/var/lib/fabric/regions/emea.creds" }]);
    expect(statSync(join(outDir, "regions", "emea.creds")).mode & 0o777).toBe(0o600);
    expect(readRegionLinks(outDir)).toEqual([expect.objectContaining({ peer: "emea", urls: ["nats-leaf://emea.example.com:7422"] })]);
    expect(ks.storeFile().region).toEqual({ name: "us", account: "fleet", dials: ["emea"] });
    const bad = await runCli("fabric", ["config", "hub", "--hosts", "h1", "h2", "h3", "--store", keys, "--out", outDir, "--link", "emea=nats-leaf://x:1"]);
    expect(bad.stderr).toMatch(/--link needs --region/);
  });
});
