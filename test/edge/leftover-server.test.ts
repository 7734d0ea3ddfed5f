import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { join } from "node:path";
import { JetStreamPublisher, pickFreePorts, processAlive, type StoredAck } from "../../fabric/core/index.js";
import { connectWithCreds, deviceInboxPrefix, issueUser } from "../../identity/index.js";
import { Harness, nodeServerPids, reapOnDispose, startCli, startTestHub, type RunningCli, type TestHub } from "../harness/index.js";
import { leafCredsFile } from "./site-helpers.js";

/** A `fabric-edge up` killed with SIGKILL leaves its leaf server running; the next one on the same data stops it and goes on. */
const h = new Harness();
let hub: TestHub;
afterAll(() => h.dispose());
beforeAll(async () => {
  hub = await startTestHub(h, { windows: false });
});

describe("fabric-edge up after a crash", () => {
  it("stops the leaf server the SIGKILLed agent left, binds the same ports and keeps the site's buffer", async () => {
    const site = "crash-site";
    const creds = await leafCredsFile(h, hub.keystore, site);
    const data = join(h.tempDir("fabric-edge-crash-"), "data");
    reapOnDispose(h, [data]);
    const [port, monitor] = await pickFreePorts(2, "127.0.0.1");
    const hubLeaf = `nats-leaf://127.0.0.1:${hub.nodes[0]?.ports.leafnode ?? 0}`;
    const up = (): RunningCli => {
      const cli = startCli("fabric-edge", ["up", "--site", site, "--hub", hubLeaf, "--creds", creds, "--data", data, "--host", "127.0.0.1", "--port", String(port), "--monitor-port", String(monitor), "--no-metrics", "--json"]);
      h.defer(async () => void (await cli.signal("SIGKILL")));
      return cli;
    };
    const device = await hub.keystore.withLock(() => issueUser(hub.keystore, { account: "fleet", role: "device", name: "d1", site }));
    const publishEvent = async (url: string): Promise<StoredAck> => {
      const nc = await connectWithCreds(device.creds ?? "", { servers: url, inboxPrefix: deviceInboxPrefix(site, "d1"), name: "d1" });
      const pub = new JetStreamPublisher(nc);
      try {
        return await pub.publish(`events.${site}.d1.door`, Buffer.from("{}"), { msgId: "before-the-crash" });
      } finally {
        pub.close();
        await nc.close();
      }
    };

    const first = up();
    const ready = await first.json<{ url: string }>();
    expect(await publishEvent(ready.url)).toMatchObject({ stream: "EDGE_EVENTS", seq: 1, duplicate: false });
    const [orphan, ...more] = nodeServerPids(data);
    expect(more).toEqual([]);
    await first.signal("SIGKILL");
    expect(processAlive(orphan ?? 0)).toBe(true);

    const second = up();
    const again = await second.json<{ url: string }>(); // before the fix: "address already in use"
    expect(again.url).toBe(`nats://127.0.0.1:${port}`);
    expect(processAlive(orphan ?? 0)).toBe(false);
    expect(nodeServerPids(data)).toHaveLength(1);
    expect(second.stderr()).toMatch(/left over from an earlier run: stopping it/);
    expect(await publishEvent(again.url)).toMatchObject({ stream: "EDGE_EVENTS", seq: 1, duplicate: true });
    expect(await second.signal("SIGINT")).toBe(0);
  });
});
