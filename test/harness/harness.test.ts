import { afterAll, describe, expect, it } from "vitest";
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { Harness } from "./index.js";
import { startTcpProxy } from "./tcp-proxy.js";

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

  it("a proxy with delayMs holds each way that long, in order, and a NATS round trip through it takes twice that", async () => {
    const s = await h.startServer();
    const proxy = await startTcpProxy(s.ports.client);
    h.defer(() => proxy.close());
    const direct = await connect({ servers: s.url });
    const far = await connect({ servers: `nats://127.0.0.1:${proxy.port}` });
    h.defer(() => far.close());
    h.defer(() => direct.close());
    proxy.delayMs = 100;
    const t0 = performance.now();
    await far.flush(); // PING out, PONG back: two delays
    const rtt = performance.now() - t0;
    expect(rtt).toBeGreaterThanOrEqual(195);
    expect(rtt).toBeLessThan(1_000);
    // many messages through the delay arrive in the order they were sent
    const got: number[] = [];
    const sub = direct.subscribe("order.x", {
      callback: (_e, m) => {
        got.push(Number(m.string()));
      },
    });
    await direct.flush();
    for (let i = 0; i < 200; i++) far.publish("order.x", String(i));
    await far.flush();
    await direct.flush();
    expect(got).toEqual([...Array(200).keys()]);
    sub.unsubscribe();
  });
});
