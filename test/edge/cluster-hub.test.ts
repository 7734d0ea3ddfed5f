import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NatsConnection } from "@nats-io/transport-node";
import { pollUntil } from "../../fabric/core/index.js";
import { Harness, startTestHub, type TestHub } from "../harness/index.js";
import { hubSequence, hubService, publishSeq, siteDevice, startTestSite } from "./site-helpers.js";

/** A site linked to one node of a 3-node hub: the hub's R3 streams source it through that node. */
const h = new Harness();
let hub: TestHub;
let svc: NatsConnection;
afterAll(() => h.dispose());
beforeAll(async () => {
  hub = await startTestHub(h, { nodes: 3, windows: false });
  svc = await hubService(h, hub);
});

describe("a site and a clustered hub", () => {
  it("buffers through a cut and the R3 hub streams end with exactly what it published, in order", async () => {
    const s = await startTestSite(h, hub, "clustered");
    await s.edge.caughtUp();
    const dev = await siteDevice(hub, s.edge, "d1");
    const subject = "telemetry.clustered.d1.seq";
    await publishSeq(dev.nc, subject, 0, 1_000);
    s.proxy.cut();
    await pollUntil(() => (s.edge.linkUp() ? undefined : true), { timeoutMs: 10_000, what: "the link down" });
    await publishSeq(dev.nc, subject, 1_000, 3_000);
    await publishSeq(dev.nc, "events.clustered.d1.door", 0, 50);
    s.proxy.restore();
    expect(await hubSequence(svc, "TELEMETRY", subject, 3_000, 60_000)).toEqual(Array.from({ length: 3_000 }, (_, i) => i));
    expect(await hubSequence(svc, "EVENTS", "events.clustered.d1.door", 50, 60_000)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    await dev.nc.close();
  });
});
