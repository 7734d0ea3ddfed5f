import { afterAll, describe, expect, it } from "vitest";
import type { NatsConnection } from "@nats-io/transport-node";
import { issueUser, openClaimsPusher, pushAccounts, revokeUsers, rotateRole, deviceInboxPrefix } from "../../identity/index.js";
import { connectAs, expectDisconnect, Harness, startTestHub, waitClosed, type TestHub } from "../harness/index.js";

const h = new Harness();
afterAll(() => h.dispose());

function creds(hub: TestHub, role: string, name: string, site?: string): string {
  const r = issueUser(hub.keystore, { account: "fleet", role, name, site });
  if (r.creds === undefined) throw new Error("no creds");
  return r.creds;
}

/** Connects one client per server of the hub with the same credential. */
async function connectEverywhere(hub: TestHub, c: string, inboxPrefix?: string): Promise<NatsConnection[]> {
  return Promise.all(hub.urls.map((url) => connectAs(url, c, inboxPrefix === undefined ? {} : { inboxPrefix })));
}

/** With `kick`, the fabric's path (kick the connections, then push); without, the account update alone. */
async function revocationDisconnectsEverywhere(hub: TestHub, kick: boolean): Promise<void> {
  const tag = kick ? "kicked" : "updated";
  const victim = creds(hub, "device", `victim-${tag}`, "plant-a");
  const bystander = creds(hub, "device", `bystander-${tag}`, "plant-a");
  const victims = await connectEverywhere(hub, victim, deviceInboxPrefix("plant-a", `victim-${tag}`));
  const others = await connectEverywhere(hub, bystander, deviceInboxPrefix("plant-a", `bystander-${tag}`));

  const r = revokeUsers(hub.keystore, "fleet", `victim-${tag}`, "device");
  expect(r.revoked).toHaveLength(1);
  const users = r.revoked.map((u) => u.publicKey);
  if (kick) {
    // the kick alone closes every connection of the key, on every server, before any account update
    const pusher = await openClaimsPusher(hub.keystore, { servers: hub.urls });
    expect(await pusher.kick("fleet", users)).toBe(hub.urls.length);
    await Promise.all(victims.map((nc) => waitClosed(nc, 5_000)));
    await pusher.close();
  }
  const report = await pushAccounts(hub.keystore, { servers: hub.urls, accounts: ["fleet"] });
  expect(report.servers).toHaveLength(hub.urls.length);
  expect(report.accounts[0]?.complete).toBe(true);
  expect(report.accounts[0]?.servers.filter((s) => s.ok)).toHaveLength(hub.urls.length);

  // every connection of the revoked device is closed by its server
  const closes = await Promise.all(victims.map((nc) => waitClosed(nc, 5_000)));
  // the account update says why; a kick just closes
  if (!kick) for (const err of closes) expect(String(err)).toMatch(/authorization|revoked/i);
  for (const nc of victims) expect(nc.isClosed()).toBe(true);
  // and it cannot come back on any server
  for (const url of hub.urls) expect(String(await expectDisconnect(url, victim))).toMatch(/authorization/i);
  // another device is untouched
  for (const nc of others) {
    expect(nc.isClosed()).toBe(false);
    await nc.flush();
    await nc.close();
  }
}

describe("revocation", () => {
  it("disconnects a connected device on a single node, and it cannot reconnect", async () => {
    const hub = await startTestHub(h);
    await revocationDisconnectsEverywhere(hub, false);
    await revocationDisconnectsEverywhere(hub, true);
  });

  it("rotating a role key disconnects all of that role's users, and only them", async () => {
    const hub = await startTestHub(h);
    const svcA = creds(hub, "service", "svc-a");
    const s1 = await connectAs(hub.urls, svcA);
    const s2 = await connectAs(hub.urls, creds(hub, "service", "svc-b"));
    const dev = await connectAs(hub.urls, creds(hub, "device", "keeps", "plant-a"), { inboxPrefix: deviceInboxPrefix("plant-a", "keeps") });
    const rot = rotateRole(hub.keystore, "fleet", "service");
    expect(rot.invalidated).toBe(2);
    await pushAccounts(hub.keystore, { servers: hub.urls, accounts: ["fleet"] });
    // the server closes them (with no -ERR for a removed signing key) and refuses them from now on
    for (const nc of [s1, s2]) {
      await waitClosed(nc, 5_000);
      expect(nc.isClosed()).toBe(true);
    }
    expect(String(await expectDisconnect(hub.urls, svcA))).toMatch(/authorization/i);
    expect(dev.isClosed()).toBe(false);
    // a credential from the new key works
    const fresh = await connectAs(hub.urls, creds(hub, "service", "svc-c"));
    await fresh.close();
    await dev.close();
  });

  it("disconnects a connected device on every node of a 3-node cluster", async () => {
    const hub = await startTestHub(h, { nodes: 3 });
    expect(hub.urls).toHaveLength(3);
    await revocationDisconnectsEverywhere(hub, false);
    await revocationDisconnectsEverywhere(hub, true);
  });
});
