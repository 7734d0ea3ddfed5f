import { statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BUILTIN_ROLE_TEMPLATES, expandSubjects, initKeystore, issueUser, SYSTEM_ACCOUNT_NAME, type Keystore } from "../../identity/index.js";
import {
  checkSiteFiles,
  edgeServerConfig,
  edgeSourceConsumerConfig,
  edgeStreamConfig,
  hubSiteSource,
  siteSubjectTransforms,
  type SubjectTransform,
  sourcedSites,
  withoutSiteSource,
  withSiteSource,
  writeEdgeServerConfig,
  type SiteSpecInput,
} from "../../leafnode-config/index.js";
import { Harness } from "../harness/index.js";

const h = new Harness();
afterAll(() => h.dispose());
let ks: Keystore;
let dir: string;
let spec: SiteSpecInput;
beforeAll(async () => {
  dir = h.tempDir("fabric-leafcfg-");
  ks = initKeystore(join(dir, "keys")).keystore;
  const leaf = await ks.withLock(() => issueUser(ks, { account: "fleet", role: "leaf", name: "plant-a", site: "plant-a" }));
  writeFileSync(join(dir, "leaf.creds"), leaf.creds ?? "", { mode: 0o600 });
  const sys = ks.account(SYSTEM_ACCOUNT_NAME);
  const fleet = ks.account("fleet");
  spec = {
    site: "plant-a",
    hub: { urls: ["nats-leaf://hub.example:7422", "tls://hub2.example:7422"], creds: join(dir, "leaf.creds") },
    trust: {
      operatorJwt: ks.operatorJwt(),
      systemAccount: sys.publicKey,
      account: fleet.publicKey,
      accounts: { [sys.publicKey]: ks.accountJwt(SYSTEM_ACCOUNT_NAME), [fleet.publicKey]: ks.accountJwt("fleet") },
    },
    listen: { host: "127.0.0.1", port: -1, monitorPort: -1 },
    storeDir: join(dir, "js"),
    resolverDir: join(dir, "jwt"),
    maxFileStoreBytes: 1024 ** 3,
  };
});

/** The message of what `fn` throws. */
function refusal(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    return String(err);
  }
  throw new Error("accepted, but should have been refused");
}

describe("leafnode-config: the edge server's config", () => {
  it("is operator mode with the site's domain, the hub remote with the leaf credential, pings that see a silent cut", () => {
    const c = edgeServerConfig(spec);
    expect(c["server_name"]).toBe("edge-plant-a");
    expect(c["jetstream"]).toMatchObject({ domain: "plant-a", store_dir: join(dir, "js"), max_file_store: 1024 ** 3 });
    expect(c["operator"]).toBe(ks.operatorJwt());
    expect(c["resolver"]).toMatchObject({ type: "full", dir: join(dir, "jwt"), allow_delete: false });
    expect(Object.keys(c["resolver_preload"] as object)).toHaveLength(2);
    expect(c["ping_interval"]).toBe("2s");
    expect(c["ping_max"]).toBe(2);
    const remote = (c["leafnodes"] as { remotes: Record<string, unknown>[] }).remotes[0];
    expect(remote).toMatchObject({ urls: spec.hub.urls, credentials: spec.hub.creds, account: ks.account("fleet").publicKey });
  });

  it("passes nats-server -t once written (0600), and TLS files go into the remote", () => {
    const path = join(dir, "edge.conf");
    writeEdgeServerConfig(path, spec);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const ca = join(dir, "ca.pem");
    writeFileSync(ca, "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n");
    const c = edgeServerConfig({ ...spec, hub: { ...spec.hub, tls: { ca } } });
    expect((c["leafnodes"] as { remotes: Record<string, unknown>[] }).remotes[0]?.["tls"]).toEqual({ ca_file: ca });
  });

  it("is refused by nats-server -t when the server cannot run it, with the server's reason", () => {
    expect(refusal(() => writeEdgeServerConfig(join(dir, "bad.conf"), { ...spec, trust: { ...spec.trust, operatorJwt: "not-a-jwt" } }))).toMatch(/FABRIC_ERR_CONFIG|refused the config/);
  });

  it("refuses bad specs naming the field", () => {
    const cases: [Partial<SiteSpecInput>, RegExp][] = [
      [{ site: "Plant A" }, /site spec\.site:/],
      [{ hub: { ...spec.hub, urls: [] } }, /site spec\.hub\.urls:/],
      [{ hub: { ...spec.hub, urls: ["http://hub:80"] } }, /site spec\.hub\.urls\.0: not a leaf URL/],
      [{ hub: { ...spec.hub, urls: ["nats-leaf://hub"] } }, /site spec\.hub\.urls\.0/],
      [{ hub: { ...spec.hub, tls: { cert: "c.pem" } } }, /site spec\.hub\.tls: give cert and key together/],
      [{ trust: { ...spec.trust, account: "UABC" } }, /site spec\.trust\.account: not an account public key/],
      [{ listen: { host: "0.0.0.0", port: 70_000, monitorPort: 8222 } }, /site spec\.listen\.port/],
      [{ maxFileStoreBytes: 0 }, /site spec\.maxFileStoreBytes/],
      [{ pingIntervalSec: 0 }, /site spec\.pingIntervalSec/],
    ];
    for (const [patch, message] of cases) expect(refusal(() => edgeServerConfig({ ...spec, ...patch }))).toMatch(message);
    expect(refusal(() => edgeServerConfig({ ...spec, extra: 1 } as SiteSpecInput))).toMatch(/Unrecognized key/);
  });

  it("checks the files it references: the credential exists and is one, TLS files exist", () => {
    expect(() => checkSiteFiles(spec)).not.toThrow();
    expect(refusal(() => checkSiteFiles({ ...spec, hub: { ...spec.hub, creds: join(dir, "missing.creds") } }))).toMatch(/site spec\.hub\.creds: .*missing\.creds does not exist/);
    const notCreds = join(dir, "not.creds");
    writeFileSync(notCreds, "hello");
    expect(refusal(() => checkSiteFiles({ ...spec, hub: { ...spec.hub, creds: notCreds } }))).toMatch(/site spec\.hub\.creds: .* is not a NATS credentials file/);
    expect(refusal(() => checkSiteFiles({ ...spec, hub: { ...spec.hub, tls: { ca: join(dir, "nope.pem") } } }))).toMatch(/site spec\.hub\.tls\.ca: .* does not exist/);
  });
});

describe("leafnode-config: the site's streams and the hub side", () => {
  it("sizes the site's streams from the outage budget, with the overflow policy as the discard policy", () => {
    const buffer = { bytes: 10 * 1024 ** 3, maxAgeMs: 7 * 86_400_000 };
    const events = edgeStreamConfig("plant-a", "events", buffer);
    const telemetry = edgeStreamConfig("plant-a", "telemetry", { ...buffer, overflow: { events: "reject-new", telemetry: "reject-new" } });
    expect(events).toMatchObject({ name: "EDGE_EVENTS", subjects: ["events.plant-a.>"], max_bytes: 1024 ** 3, discard: "new", max_age: 7 * 86_400_000 * 1e6, storage: "file" });
    expect(telemetry).toMatchObject({ name: "EDGE_TELEMETRY", subjects: ["telemetry.plant-a.>"], max_bytes: 9 * 1024 ** 3, discard: "new" });
    expect(edgeStreamConfig("plant-a", "telemetry", buffer)["discard"]).toBe("old");
    // a site that pre-aggregates gives its partials a share of telemetry's
    expect(edgeStreamConfig("plant-a", "telemetry", buffer, true)["max_bytes"]).toBe(8 * 1024 ** 3);
    expect(edgeStreamConfig("plant-a", "aggregates", buffer, true)).toMatchObject({ name: "EDGE_AGGREGATES", subjects: ["agg.*.plant-a.>"], max_bytes: 1024 ** 3, discard: "old" });
    expect(refusal(() => edgeStreamConfig("plant-a", "events", { bytes: 10, maxAgeMs: 1 }))).toMatch(/buffer\.bytes: the buffer must be at least 1 MiB/);
  });

  it("sources each site through its durable consumer on the site's JetStream API, one entry per site", () => {
    expect(edgeSourceConsumerConfig("plant-a", "telemetry")).toMatchObject({
      durable_name: "hub-plant-a",
      ack_policy: "flow_control",
      flow_control: true,
      max_deliver: -1,
      deliver_subject: "$FABRIC.src.plant-a.telemetry",
    });
    const a = hubSiteSource("plant-a", "telemetry");
    expect(a).toMatchObject({ name: "EDGE_TELEMETRY", external: { api: "$JS.plant-a.API", deliver: "" }, consumer: { name: "hub-plant-a", deliver_subject: "$FABRIC.src.plant-a.telemetry" } });
    const other = hubSiteSource("plant-b", "telemetry");
    const twice = withSiteSource(withSiteSource([other], "plant-a", "telemetry"), "plant-a", "telemetry");
    expect(twice).toEqual([other, a]);
    // a site already sourced keeps its place (an unchanged list means no stream update)
    expect(withSiteSource([a, other], "plant-a", "telemetry")).toEqual([a, other]);
    expect(sourcedSites(twice)).toEqual(["plant-b", "plant-a"]);
    expect(withoutSiteSource(twice, "plant-a")).toEqual([other]);
  });

  it("pins what the hub stores from a site to the site's own subjects, and keeps a well-behaved site's as they are", () => {
    // the transforms' sources must not overlap (nats-server refuses overlapping ones): at most one matches a subject
    const apply = (t: SubjectTransform[], subject: string): string => {
      const tokens = subject.split(".");
      const hits = t.filter((x) => {
        const src = x.src.split(".");
        return src.at(-1) === ">" ? tokens.length >= src.length : tokens.length === src.length;
      });
      expect(hits).toHaveLength(1);
      const [hit] = hits;
      if (hit === undefined) throw new Error("no transform");
      const src = hit.src.split(".");
      const out = hit.dest.split(".").map((d) => d.replace(/^\{\{wildcard\((\d)\)\}\}$/, (_m, n: string) => tokens[Number(n) - 1] ?? "?"));
      return out.at(-1) === ">" ? [...out.slice(0, -1), ...tokens.slice(src.length - 1)].join(".") : out.join(".");
    };
    const telemetry = siteSubjectTransforms("plant-a", "telemetry");
    expect(telemetry.map((x) => x.src)).toEqual(["*.*.>", "*.*", "*"]);
    expect(apply(telemetry, "telemetry.plant-a.d1.temp")).toBe("telemetry.plant-a.d1.temp");
    expect(apply(telemetry, "telemetry.plant-b.d1.temp")).toBe("telemetry.plant-a.d1.temp");
    expect(apply(telemetry, "cmd.plant-b.d1")).toBe("telemetry.plant-a.d1");
    expect(apply(telemetry, "a.b")).toBe("telemetry.plant-a.a.b");
    expect(apply(telemetry, "stray")).toBe("telemetry.plant-a.stray");
    const events = siteSubjectTransforms("plant-a", "events");
    expect(apply(events, "events.plant-a.d1.door")).toBe("events.plant-a.d1.door");
    expect(apply(events, "events.plant-b.d1.door")).toBe("events.plant-a.d1.door");
    const aggregates = siteSubjectTransforms("plant-a", "aggregates");
    expect(apply(aggregates, "agg.1m.plant-a.d1.temp")).toBe("agg.1m.plant-a.d1.temp");
    expect(apply(aggregates, "agg.1m.plant-b.d1.temp")).toBe("agg.1m.plant-a.d1.temp");
    expect(apply(aggregates, "agg.1m.x")).toBe("agg.1m.plant-a.x");
    expect(apply(aggregates, "agg.1m")).toBe("agg.1m.plant-a");
    expect(apply(aggregates, "agg")).toBe("agg.agg.plant-a");
    expect(hubSiteSource("plant-a", "aggregates").subject_transforms).toEqual(aggregates);
  });

  it("gives a site's leaf credential its own site's subjects and the sourcing API only", () => {
    const ctx = { name: "plant-a", subject: "U", accountName: "fleet", accountSubject: "A", tags: ["site:plant-a"], accountTags: [] };
    const leaf = BUILTIN_ROLE_TEMPLATES.leaf;
    expect(expandSubjects(leaf.pub?.allow, ctx)).toEqual(["$FABRIC.src.plant-a.>", "$FABRIC.edge.plant-a.>", "$FABRIC.id.>", "_INBOX.plant-a.>", "$JSC.R.>"]);
    expect(expandSubjects(leaf.sub?.allow, ctx)).toEqual(["cmd.plant-a.>", "$JS.plant-a.API.>", "$JS.FC.*.hub-plant-a.>", "$FABRIC.edge.plant-a.>", "_INBOX.plant-a.>"]);
    // nothing of telemetry or events crosses as a plain message
    for (const s of [...(expandSubjects(leaf.pub?.allow, ctx) ?? []), ...(expandSubjects(leaf.sub?.allow, ctx) ?? [])]) expect(s).not.toMatch(/^(telemetry|events)\./);
  });
});

