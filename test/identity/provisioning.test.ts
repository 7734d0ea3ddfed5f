import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jetstream } from "@nats-io/jetstream";
import {
  createKeyPair,
  deviceInboxPrefix,
  formatCreds,
  issueBootstrap,
  provisionDevice,
  pushAccounts,
  renewCredential,
  revokeUsers,
  validateUserJwt,
  peekJwt,
  ProvisionError,
} from "../../identity/index.js";
import { connectAs, Harness, startTestHub, type TestHub } from "../harness/index.js";

const h = new Harness();
let hub: TestHub;
afterAll(() => h.dispose());
beforeAll(async () => {
  hub = await startTestHub(h);
});

async function refusedWith(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    return err instanceof ProvisionError ? err.code : String(err);
  }
  return "accepted";
}

describe("device provisioning and renewal through the identity service", () => {
  it("provisions a device that keeps its own key, once per token, and renews it", async () => {
    const boot = issueBootstrap(hub.keystore, "fleet", "plant-a", 2, 3600);
    const key = createKeyPair("user");
    const { jwt } = await provisionDevice({ servers: hub.urls, bootstrapCreds: boot.creds, token: boot.tokens[0] ?? "", name: "sensor-7", keyPair: key });
    const v = validateUserJwt(jwt, hub.keystore.trustAnchors());
    expect(v.publicKey).toBe(key.publicKey);
    expect(v.site).toBe("plant-a");
    expect(v.role).toBe("device");

    // the device connects with its own seed and the issued JWT, and publishes its telemetry
    const creds = formatCreds(jwt, key.seed);
    const nc = await connectAs(hub.urls, creds, { inboxPrefix: deviceInboxPrefix("plant-a", "sensor-7") });
    const ack = await jetstream(nc).publish("telemetry.plant-a.sensor-7.temp", JSON.stringify({ value: 1, ts: Date.now() }));
    expect(ack.stream).toBe("TELEMETRY");
    await nc.close();

    // the same token again: refused, even with a fresh key
    expect(await refusedWith(provisionDevice({ servers: hub.urls, bootstrapCreds: boot.creds, token: boot.tokens[0] ?? "", name: "sensor-8", keyPair: createKeyPair("user") }))).toBe("FABRIC_ERR_TOKEN_USED");
    // an unknown token: refused
    expect(await refusedWith(provisionDevice({ servers: hub.urls, bootstrapCreds: boot.creds, token: "nope", name: "sensor-8", keyPair: createKeyPair("user") }))).toBe("FABRIC_ERR_TOKEN_INVALID");
    // a name another key holds at the site: refused, and the token is not spent
    expect(await refusedWith(provisionDevice({ servers: hub.urls, bootstrapCreds: boot.creds, token: boot.tokens[1] ?? "", name: "sensor-7", keyPair: createKeyPair("user") }))).toBe("FABRIC_ERR_PROVISION");

    // renewal: proves possession of the key, gets a newer JWT for the same key
    const renewed = await renewCredential({ servers: hub.urls, creds, inboxPrefix: deviceInboxPrefix("plant-a", "sensor-7") });
    expect(peekJwt(renewed.jwt)["sub"]).toBe(key.publicKey);
    expect(Number(peekJwt(renewed.jwt)["iat"])).toBeGreaterThanOrEqual(Number(peekJwt(jwt)["iat"]));
    expect(validateUserJwt(renewed.jwt, hub.keystore.trustAnchors()).name).toBe("sensor-7");
  });

  it("refuses a signature made by another key than the one claimed", async () => {
    const boot = issueBootstrap(hub.keystore, "fleet", "plant-a", 1, 3600);
    const claimed = createKeyPair("user");
    const other = createKeyPair("user");
    const liar = { ...other, publicKey: claimed.publicKey };
    expect(await refusedWith(provisionDevice({ servers: hub.urls, bootstrapCreds: boot.creds, token: boot.tokens[0] ?? "", name: "liar", keyPair: liar }))).toBe("FABRIC_ERR_PROOF_INVALID");
    // the token was not spent by the failed attempt
    const ok = await provisionDevice({ servers: hub.urls, bootstrapCreds: boot.creds, token: boot.tokens[0] ?? "", name: "honest", keyPair: claimed });
    expect(peekJwt(ok.jwt)["sub"]).toBe(claimed.publicKey);
  });

  it("refuses a revoked key: no new credential, no renewal", async () => {
    const boot = issueBootstrap(hub.keystore, "fleet", "plant-b", 2, 3600);
    const key = createKeyPair("user");
    const { jwt } = await provisionDevice({ servers: hub.urls, bootstrapCreds: boot.creds, token: boot.tokens[0] ?? "", name: "gone", keyPair: key });
    await hub.keystore.withLock(() => revokeUsers(hub.keystore, "fleet", key.publicKey));
    await pushAccounts(hub.keystore, { servers: hub.urls, accounts: ["fleet"] });
    expect(await refusedWith(provisionDevice({ servers: hub.urls, bootstrapCreds: boot.creds, token: boot.tokens[1] ?? "", name: "gone", keyPair: key }))).toBe("FABRIC_ERR_KEY_REVOKED");
    // renewal needs a connection with the revoked credential, which the server refuses
    expect(await refusedWith(renewCredential({ servers: hub.urls, creds: formatCreds(jwt, key.seed), inboxPrefix: deviceInboxPrefix("plant-b", "gone") }))).toMatch(/authorization/i);
  });

  it("the bootstrap credential reaches nothing but provisioning", async () => {
    const boot = issueBootstrap(hub.keystore, "fleet", "plant-c", 1, 3600);
    const bootName = String(peekJwt(boot.creds.split("\n")[1] ?? "")["name"]);
    const nc = await connectAs(hub.urls, boot.creds, { inboxPrefix: `_INBOX.boot.${bootName}` });
    const errors: string[] = [];
    void (async () => {
      for await (const s of nc.status()) if (s.type === "error") errors.push(String(s.error));
    })();
    nc.publish("telemetry.plant-c.x.temp", "1");
    const sub = nc.subscribe("telemetry.>");
    const closed = await sub.closed.then((r) => (r instanceof Error ? String(r) : ""), (e: unknown) => String(e));
    expect(closed).toMatch(/permissions violation/i);
    await nc.flush();
    await nc.close();
    expect(errors.some((e) => /permissions violation for publish/i.test(e))).toBe(true);
  });
});
