import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NatsConnection } from "@nats-io/transport-node";
import { startEdge } from "../../edge/index.js";
import { Harness, makeTestCerts, startTestHub, testLogger, type TestCerts, type TestHub } from "../harness/index.js";
import { hubSequence, hubService, leafCredsFile, linkDown, linkedSite, publishSeq } from "./site-helpers.js";

/** A hub whose leaf listener wants TLS and a client certificate its CA signed (mTLS). */
const h = new Harness();
let hub: TestHub;
let svc: NatsConnection;
let certs: TestCerts;
afterAll(() => h.dispose());
beforeAll(async () => {
  certs = makeTestCerts(h.tempDir("fabric-leaf-tls-"));
  hub = await startTestHub(h, { windows: false, leafTls: { ...certs.server, ca: certs.ca } });
  svc = await hubService(h, hub);
});

describe("sites over TLS", () => {
  it("a site with the CA and a client certificate links, and forwards what it buffered", async () => {
    const { s, dev } = await linkedSite(h, hub, "tls-site", { tls: { ca: certs.ca, ...certs.client } });
    s.proxy.cut();
    await linkDown(s.edge);
    await publishSeq(dev.nc, "telemetry.tls-site.d1.seq", 0, 500);
    s.proxy.restore();
    expect(await hubSequence(svc, "TELEMETRY", "telemetry.tls-site.d1.seq", 500)).toEqual(Array.from({ length: 500 }, (_, i) => i));
    await dev.nc.close();
  });

  it("a site without a client certificate never links: its first start, which needs the hub, fails", async () => {
    const creds = await leafCredsFile(h, hub.keystore, "no-cert");
    const hubLeaf = `nats-leaf://127.0.0.1:${hub.nodes[0]?.ports.leafnode ?? 0}`;
    const dataDir = h.tempDir("fabric-edge-nocert-");
    await expect(
      startEdge({ site: "no-cert", hub: [hubLeaf], creds, dataDir, host: "127.0.0.1", port: 0, monitorPort: 0, tls: { ca: certs.ca }, firstStartTrustTimeoutMs: 3_000 }, testLogger()),
    ).rejects.toThrow(/FABRIC_ERR_EDGE_HUB_UNREACHABLE|did not answer within 3000 ms/);
  });
});
