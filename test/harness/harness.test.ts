import { afterAll, describe, expect, it } from "vitest";
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { Harness } from "./index.js";

const h = new Harness();
afterAll(() => h.dispose());

describe("test harness", () => {
  it("starts a single server on picked ports and restarts it on the same ones", async () => {
    const s = await h.startServer();
    expect(s.ports.client).toBeGreaterThan(0);
    expect(s.ports.monitoring).toBeGreaterThan(0);
    const before = s.ports.client;
    await s.kill();
    await s.restart();
    expect(s.ports.client).toBe(before);
    const nc = await connect({ servers: s.url });
    await nc.close();
  });

  it("starts a 3-node JetStream cluster that places an R3 stream", async () => {
    const nodes = await h.startCluster(3);
    const nc = await connect({ servers: nodes.map((n) => n.url) });
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.add({ name: "R3", subjects: ["r3.>"], num_replicas: 3 });
    expect(info.cluster?.replicas?.length).toBe(2);
    await nc.close();
  });
});
