import { statSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pollUntil } from "../../fabric/core/index.js";
import type { SiteInfo } from "../../fabric/hub/index.js";
import type { SiteReport } from "../../leafnode-config/index.js";
import { Harness, runCli, startCli, startTestHub, type TestHub } from "../harness/index.js";

/** The operator's path: `fabric-id issue leaf`, `fabric-edge up` / `status`, `fabric site` and `fabric status`. */
const h = new Harness();
let hub: TestHub;
afterAll(() => h.dispose());
beforeAll(async () => {
  hub = await startTestHub(h, { windows: false });
});

describe("fabric-edge and fabric site", () => {
  it("a site issued and started from the command line shows up at the hub; it can be dropped and added again", async () => {
    const dir = h.tempDir("fabric-edge-cli-");
    const creds = join(dir, "cli-site.creds");
    const issued = await runCli("fabric-id", ["--store", hub.keystoreDir, "issue", "leaf", "cli-site", "-o", creds]);
    expect(issued.code, issued.stderr).toBe(0);
    expect(statSync(creds).mode & 0o777).toBe(0o600);
    const data = join(dir, "data");
    const hubLeaf = `nats-leaf://127.0.0.1:${hub.nodes[0]?.ports.leafnode ?? 0}`;
    const up = startCli("fabric-edge", ["up", "--site", "cli-site", "--hub", hubLeaf, "--creds", creds, "--data", data, "--host", "127.0.0.1", "--port", "0", "--monitor-port", "0", "--buffer", "64MB", "--max-age", "1h", "--json"]);
    h.defer(async () => void (await up.signal("SIGINT")));
    const ready = await up.json<{ site: string; url: string }>();
    expect(ready.site).toBe("cli-site");
    expect(statSync(join(data, "agent.creds")).mode & 0o777).toBe(0o600);

    const report = await pollUntil(async () => {
      const r = await runCli("fabric-edge", ["status", "--data", data, "--json"]);
      if (r.code !== 0) return undefined;
      const rep = JSON.parse(r.stdout) as SiteReport;
      return rep.link === "up" && rep.trustSyncedAt > 0 ? rep : undefined;
    }, { timeoutMs: 20_000, intervalMs: 250, what: "the site's link up" });
    expect(report.streams.telemetry.maxBytes + report.streams.events.maxBytes).toBe(64 * 1024 * 1024);

    const hubArgs = ["--store", hub.keystoreDir, "--data", hub.dataDir];
    const listed = await pollUntil(async () => {
      const r = await runCli("fabric", ["site", "ls", ...hubArgs, "--json"]);
      const site = (JSON.parse(r.stdout) as SiteInfo[]).find((s) => s.site === "cli-site");
      return site?.report !== undefined ? site : undefined;
    }, { timeoutMs: 20_000, intervalMs: 250, what: "the site at the hub" });
    expect(listed.sources.events).toBeDefined();
    expect(listed.sources.telemetry).toBeDefined();

    const status = await runCli("fabric", ["status", ...hubArgs]);
    expect(status.stdout).toMatch(/edge sites:\n\s+cli-site\s+link up/);

    const rm = await runCli("fabric", ["site", "rm", "cli-site", ...hubArgs]);
    expect(rm.code, rm.stderr).toBe(0);
    const after = JSON.parse((await runCli("fabric", ["site", "ls", ...hubArgs, "--json"])).stdout) as SiteInfo[];
    expect(after.map((s) => s.site)).not.toContain("cli-site");
    expect((await runCli("fabric", ["site", "rm", "cli-site", ...hubArgs])).code).toBe(1);
    expect((await runCli("fabric", ["site", "add", "cli-site", ...hubArgs])).code).toBe(0);
    const back = JSON.parse((await runCli("fabric", ["site", "ls", ...hubArgs, "--json"])).stdout) as SiteInfo[];
    expect(back.find((s) => s.site === "cli-site")?.sources.telemetry).toBeDefined();
    expect(await up.signal("SIGINT")).toBe(0);
  });

  it("refuses bad flags naming them", async () => {
    const base = ["up", "--hub", "nats-leaf://127.0.0.1:1", "--creds", "/nonexistent.creds", "--data", h.tempDir("fabric-edge-bad-")];
    const badSite = await runCli("fabric-edge", [...base, "--site", "Plant A"]);
    expect(badSite.code).not.toBe(0);
    expect(badSite.stderr).toMatch(/edge options\.site: site names are/);
    const badBuffer = await runCli("fabric-edge", [...base, "--site", "ok", "--buffer", "lots"]);
    expect(badBuffer.stderr).toMatch(/--buffer "lots" is not a size/);
    const noCreds = await runCli("fabric-edge", [...base, "--site", "ok"]);
    expect(noCreds.stderr).toMatch(/cannot read the leaf credential \/nonexistent\.creds/);
    const otherCreds = join(h.tempDir("fabric-edge-other-"), "other.creds");
    expect((await runCli("fabric-id", ["--store", hub.keystoreDir, "issue", "leaf", "other-site", "-o", otherCreds])).code).toBe(0);
    const wrongSite = await runCli("fabric-edge", ["up", "--hub", "nats-leaf://127.0.0.1:1", "--creds", otherCreds, "--data", h.tempDir("fabric-edge-bad-"), "--site", "ok"]);
    expect(wrongSite.stderr).toMatch(/is site other-site's, not site ok's \(--site\)/);
    const badSiteName = await runCli("fabric", ["site", "add", "Bad Site", "--store", hub.keystoreDir, "--data", hub.dataDir]);
    expect(badSiteName.stderr).toMatch(/site "Bad Site" is invalid/);
  });
});
