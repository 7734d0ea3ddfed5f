import { afterAll, beforeAll, describe, expect, it } from "vitest";
import mqtt from "mqtt";
import type { NatsConnection } from "@nats-io/transport-node";
import { pollUntil } from "../../fabric/core/index.js";
import { issueUser, pushAccounts, revokeUsers } from "../../identity/index.js";
import { Harness, startTestHub, type TestHub } from "../harness/index.js";
import { hubSequence, hubService, linkDown, startTestSite } from "./site-helpers.js";

/** Legacy MQTT devices at a site, through the site's own ingress bound to its leaf server. */
const h = new Harness();
let hub: TestHub;
let svc: NatsConnection;
afterAll(() => h.dispose());
beforeAll(async () => {
  hub = await startTestHub(h, { windows: false });
  svc = await hubService(h, hub);
});

const connectMqtt = (port: number, name: string, jwt: string) => mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { protocolVersion: 4, clientId: name, username: name, password: jwt, reconnectPeriod: 0 });

describe("a site's own MQTT ingress", () => {
  it("stores QoS 1 publishes at the site while the WAN is down (PUBACK = stored there) and the hub gets them in order", async () => {
    const s = await startTestSite(h, hub, "mq", { mqtt: { port: 0 } });
    await s.edge.caughtUp();
    expect(s.edge.mqttPort).toBeGreaterThan(0);
    const dev = issueUser(hub.keystore, { account: "fleet", role: "mqtt", name: "m1", site: "mq" });
    const c = await connectMqtt(s.edge.mqttPort, "m1", dev.jwt);
    s.proxy.cut();
    await linkDown(s.edge);
    for (let i = 0; i < 200; i++) await c.publishAsync("telemetry/mq/m1/temp", JSON.stringify({ i, value: i, ts: Date.now() }), { qos: 1 });
    expect((await s.edge.report()).streams.telemetry.messages).toBe(200);
    s.proxy.restore();
    expect(await hubSequence(svc, "TELEMETRY", "telemetry.mq.m1.temp", 200)).toEqual(Array.from({ length: 200 }, (_, i) => i));
    await c.endAsync();
  });

  it("refuses an MQTT device revoked while the site was offline once the link is back", async () => {
    const s = await startTestSite(h, hub, "mq-rev", { mqtt: { port: 0 } });
    await s.edge.caughtUp();
    const dev = issueUser(hub.keystore, { account: "fleet", role: "mqtt", name: "m2", site: "mq-rev" });
    const c = await connectMqtt(s.edge.mqttPort, "m2", dev.jwt);
    await c.endAsync();
    s.proxy.cut();
    await linkDown(s.edge);
    revokeUsers(hub.keystore, "fleet", "m2", "mqtt");
    await pushAccounts(hub.keystore, { servers: hub.urls, accounts: ["fleet"] });
    // offline, the site cannot know
    await (await connectMqtt(s.edge.mqttPort, "m2", dev.jwt)).endAsync();
    s.proxy.restore();
    await s.edge.caughtUp();
    const refused = await pollUntil(async () => {
      const r = await connectMqtt(s.edge.mqttPort, "m2", dev.jwt).then(
        async (cc) => {
          await cc.endAsync();
          return undefined;
        },
        (err: unknown) => err,
      );
      return r;
    }, { timeoutMs: 5_000, intervalMs: 100, what: "the site's ingress to refuse the revoked device" });
    expect(String(refused)).toMatch(/not authori[sz]ed|bad user ?name or password|refused/i);
  });
});
