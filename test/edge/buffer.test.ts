import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NatsConnection } from "@nats-io/transport-node";
import { JetStreamPublisher, pollUntil } from "../../fabric/core/index.js";
import { listSites } from "../../fabric/hub/index.js";
import { Harness, startTestHub, type TestHub } from "../harness/index.js";
import { hubSequence, hubService, linkDown, linkedSite } from "./site-helpers.js";

/** A full buffer does what its overflow policy says, and the site's report shows it. */
const h = new Harness();
let hub: TestHub;
let svc: NatsConnection;
afterAll(() => h.dispose());
beforeAll(async () => {
  hub = await startTestHub(h, { windows: false });
  svc = await hubService(h, hub);
});

const MIB = 1024 * 1024;
const body = (i: number): Buffer => Buffer.from(JSON.stringify({ i, value: i, ts: Date.now(), pad: "x".repeat(1_000) }));

describe("a site's buffer during an outage", () => {
  it("reject-new (events): once full, publishers are refused, nothing stored is lost, and the report says full", async () => {
    const { s, dev } = await linkedSite(h, hub, "full-events", { buffer: { bytes: 2 * MIB, maxAgeMs: 3_600_000, overflow: { events: "reject-new", telemetry: "drop-oldest" } } });
    s.proxy.cut();
    await linkDown(s.edge);
    const pub = new JetStreamPublisher(dev.nc);
    let accepted = 0;
    let refusal = "";
    for (let i = 0; refusal === "" && i < 5_000; i++) {
      try {
        await pub.publish("events.full-events.d1.alarm", body(i), { msgId: `alarm-${i}` });
        accepted++;
      } catch (err) {
        refusal = String(err);
      }
    }
    pub.close();
    expect(refusal).toMatch(/maximum bytes|resource|exceeded/i);
    expect(accepted).toBeGreaterThan(500);
    const r = await s.edge.report();
    expect(r.link).toBe("down");
    expect(r.streams.events).toMatchObject({ overflow: "reject-new", full: true, dropped: 0, messages: accepted, backlog: accepted });
    expect(r.streams.events.oldestBacklogMs).toBeGreaterThan(0);
    s.proxy.restore();
    expect(await hubSequence(svc, "EVENTS", "events.full-events.d1.alarm", accepted)).toEqual(Array.from({ length: accepted }, (_, i) => i));
    await dev.nc.close();
  });

  it("drop-oldest (telemetry): once full, the oldest go, the report counts them, and the hub gets the newest in order", async () => {
    const { s, dev } = await linkedSite(h, hub, "full-telemetry", { buffer: { bytes: 2 * MIB, maxAgeMs: 3_600_000 } });
    s.proxy.cut();
    await linkDown(s.edge);
    const pub = new JetStreamPublisher(dev.nc);
    const n = 3_000; // ~3 MiB into a 1 MiB telemetry buffer: all accepted
    await Promise.all(Array.from({ length: n }, (_, i) => pub.publish("telemetry.full-telemetry.d1.temp", body(i))));
    pub.close();
    const r = await s.edge.report();
    const kept = r.streams.telemetry.messages;
    expect(kept).toBeLessThan(n);
    expect(r.streams.telemetry).toMatchObject({ overflow: "drop-oldest", full: true, dropped: n - kept, backlog: kept });
    s.proxy.restore();
    expect(await hubSequence(svc, "TELEMETRY", "telemetry.full-telemetry.d1.temp", kept)).toEqual(Array.from({ length: kept }, (_, i) => n - kept + i));
    // the hub keeps the site's reports: the drops show there too, once the link is back
    const atHub = await pollUntil(async () => {
      const site = (await listSites(svc)).find((x) => x.site === "full-telemetry");
      return site?.report?.link === "up" ? site : undefined;
    }, { timeoutMs: 10_000, what: "the site's report at the hub" });
    expect(atHub.report?.streams.telemetry.dropped).toBe(n - kept);
    expect(atHub.sources.telemetry).toBeDefined();
    await dev.nc.close();
  });
});
