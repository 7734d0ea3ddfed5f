import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { pollUntil } from "../../fabric/core/index.js";
import {
  addRole,
  createKeyPair,
  pushAccounts,
  deviceInboxPrefix,
  encodeJwt,
  formatCreds,
  issueUser,
  userClaimsSchema,
  type IssueResult,
} from "../../identity/index.js";
import { connectAs, expectDisconnect, Harness, startTestHub, type TestHub } from "../harness/index.js";

const h = new Harness();
let hub: TestHub;
afterAll(() => h.dispose());
beforeAll(async () => {
  hub = await startTestHub(h);
});

function device(name: string, site: string, expiresInSec?: number): IssueResult & { creds: string } {
  const r = issueUser(hub.keystore, { account: "fleet", role: "device", name, site, expiresInSec });
  if (r.creds === undefined) throw new Error("no creds");
  return { ...r, creds: r.creds };
}

async function telemetryCount(subject: string): Promise<number> {
  const svc = issueUser(hub.keystore, { account: "fleet", role: "service", name: "counter" });
  const nc = await connectAs(hub.urls, svc.creds ?? "");
  try {
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info("TELEMETRY", { subjects_filter: subject });
    return info.state.subjects?.[subject] ?? 0;
  } finally {
    await nc.close();
  }
}

describe("a device credential on a real nats-server", () => {
  it("publishes its own telemetry into the stream", async () => {
    const d = device("d1", "plant-a");
    const nc = await connectAs(hub.urls, d.creds, { inboxPrefix: deviceInboxPrefix("plant-a", "d1") });
    const js = jetstream(nc);
    const ack = await js.publish("telemetry.plant-a.d1.temp", JSON.stringify({ value: 21.5, ts: Date.now() }));
    expect(ack.stream).toBe("TELEMETRY");
    await nc.close();
    expect(await telemetryCount("telemetry.plant-a.d1.temp")).toBe(1);
  });

  it("cannot publish as another device or subscribe to its commands: the server refuses", async () => {
    const d = device("d2", "plant-a");
    const nc = await connectAs(hub.urls, d.creds, { inboxPrefix: deviceInboxPrefix("plant-a", "d2") });
    const errors: string[] = [];
    void (async () => {
      for await (const s of nc.status()) if (s.type === "error") errors.push(String(s.error));
    })();
    nc.publish("telemetry.plant-a.d1.temp", JSON.stringify({ value: 99, ts: Date.now() }));
    nc.publish("telemetry.plant-b.d2.temp", JSON.stringify({ value: 99, ts: Date.now() }));
    const sub = nc.subscribe("cmd.plant-a.d1.>");
    const subErr = await sub.closed.then(
      (r) => (r instanceof Error ? String(r) : undefined),
      (e: unknown) => String(e),
    );
    expect(subErr).toMatch(/permissions violation for subscription/i);
    await pollUntil(() => errors.filter((e) => /permissions violation for publish/i.test(e)).length >= 2, { what: "two publish violations" });
    // its own commands are fine
    const own = nc.subscribe("cmd.plant-a.d2.>");
    await nc.flush();
    expect(own.isClosed()).toBe(false);
    await nc.close();
    expect(await telemetryCount("telemetry.plant-a.d1.temp")).toBe(1);
    expect(await telemetryCount("telemetry.plant-b.d2.temp")).toBe(0);
  });

  it("refuses forged, tampered, expired and not-yet-valid credentials at connect", async () => {
    const account = hub.keystore.account("fleet");
    const good = device("d3", "plant-a");
    const seed = good.seed ?? "";

    // tampered: the name changed after signing
    const [hd, body, sig] = good.jwt.split(".") as [string, string, string];
    const claims = JSON.parse(Buffer.from(body, "base64url").toString()) as Record<string, unknown>;
    claims["name"] = "d1";
    const tampered = `${hd}.${Buffer.from(JSON.stringify(claims)).toString("base64url")}.${sig}`;
    expect(String(await expectDisconnect(hub.urls, formatCreds(tampered, seed)))).toMatch(/authorization/i);

    // forged: signed by a key the account does not have
    const rogue = createKeyPair("account");
    const user = createKeyPair("user");
    const now = Math.floor(Date.now() / 1000);
    const forged = encodeJwt(
      userClaimsSchema.parse({ jti: "x", iss: rogue.publicKey, iat: now, sub: user.publicKey, name: "x", nats: { type: "user", version: 2, issuer_account: account.publicKey, tags: ["site:plant-a"] } }),
      rogue,
    );
    expect(String(await expectDisconnect(hub.urls, formatCreds(forged, user.seed)))).toMatch(/authorization/i);

    // not yet valid
    const signer = hub.keystore.keyPair(account.roles["device"]?.key ?? "");
    const later = encodeJwt(
      userClaimsSchema.parse({ jti: "x", iss: signer.publicKey, iat: now, nbf: now + 3600, sub: user.publicKey, name: "later", nats: { type: "user", version: 2, issuer_account: account.publicKey, tags: ["site:plant-a"] } }),
      signer,
    );
    expect(String(await expectDisconnect(hub.urls, formatCreds(later, user.seed)))).toMatch(/authorization/i);

    // expired: valid for one second, refused once that second is over
    const short = device("d4", "plant-a", 1);
    // the server counts whole seconds: past `exp` means the next second has begun
    await pollUntil(() => Date.now() / 1000 >= (short.record.expiresAt ?? 0) + 1.05, { what: "the credential to expire", intervalMs: 50 });
    expect(String(await expectDisconnect(hub.urls, short.creds))).toMatch(/authorization|expired/i);

    // and the good one still connects
    const nc = await connectAs(hub.urls, good.creds);
    await nc.close();
  });

  it("enforces a custom role an operator added, with its own template", async () => {
    addRole(hub.keystore, "fleet", { name: "auditor", pub: ["audit.{{tag(site)}}.>"], sub: ["events.{{tag(site)}}.>", "_INBOX.>"], siteScoped: true });
    await pushAccounts(hub.keystore, { servers: hub.urls, accounts: ["fleet"] });
    const r = issueUser(hub.keystore, { account: "fleet", role: "auditor", name: "aud-1", site: "plant-a" });
    const nc = await connectAs(hub.urls, r.creds ?? "");
    const own = nc.subscribe("events.plant-a.>");
    const other = nc.subscribe("events.plant-b.>");
    const otherErr = await other.closed.then((x) => (x instanceof Error ? String(x) : ""), (e: unknown) => String(e));
    expect(otherErr).toMatch(/permissions violation for subscription/i);
    await nc.flush();
    expect(own.isClosed()).toBe(false);
    await nc.close();
    expect(() => addRole(hub.keystore, "fleet", { name: "broken", pub: ["a..b"] })).toThrow(/role\.pub\.0: not a valid NATS subject/);
    expect(() => addRole(hub.keystore, "fleet", { name: "Bad Name", pub: ["a"] })).toThrow(/role\.name/);
  });
});
