import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { join } from "node:path";
import { jetstream } from "@nats-io/jetstream";
import mqtt from "mqtt";
import { pickFreePorts, pollUntil } from "../../fabric/core/index.js";
import { deviceInboxPrefix, issueUser } from "../../identity/index.js";
import { saveDefinition } from "../../streams/index.js";
import { connectAs, Harness, runCli, startCli, startTestHub, type RunningCli, type TestHub } from "../harness/index.js";
import { startPrometheus, type TestPrometheus } from "../harness/prometheus.js";

/**
 * Every long-running component other than the hub serves /metrics of its own: `fabric ingress`, `fabric worker`
 * and `fabric-edge up`, each a process of its own against an in-process hub, scraped by a real Prometheus during
 * a short load, and the figures read back through its query API.
 */
const h = new Harness();
let hub: TestHub;
afterAll(() => h.dispose());
beforeAll(async () => {
  hub = await startTestHub(h, { windows: false });
});

const READINGS = 60;
const SITE_READINGS = 40;

function started(cli: RunningCli): RunningCli {
  h.defer(async () => void (await cli.signal("SIGTERM")));
  return cli;
}

describe("metrics of fabric ingress, fabric worker and fabric-edge through a real Prometheus", () => {
  let prom: TestPrometheus;

  it("each is scraped and counts what the load did", async () => {
    const conn = ["--store", hub.keystoreDir, "--data", hub.dataDir, "--server", ...hub.urls];
    const ingress = started(startCli("fabric", ["ingress", ...conn, "--host", "127.0.0.1", "--mqtt-port", "0", "--mqtt-ws-port", "0", "--metrics-port", "0", "--json"]));
    const ing = await ingress.json<{ tcp: number; metrics: number }>();
    // the worker prints no JSON: its metrics port is picked for it
    const [workerPort = 0] = await pickFreePorts(1);
    started(startCli("fabric", ["worker", ...conn, "--metrics-port", String(workerPort)]));

    const dir = h.tempDir("fabric-metrics-edge-");
    const creds = join(dir, "site-m.creds");
    expect((await runCli("fabric-id", ["--store", hub.keystoreDir, "issue", "leaf", "site-m", "-o", creds])).code).toBe(0);
    const hubLeaf = `nats-leaf://127.0.0.1:${hub.nodes[0]?.ports.leafnode ?? 0}`;
    const edge = started(startCli("fabric-edge", ["up", "--site", "site-m", "--hub", hubLeaf, "--creds", creds, "--data", join(dir, "data"), "--host", "127.0.0.1", "--port", "0", "--monitor-port", "0", "--metrics-port", "0", "--json"]));
    const site = await edge.json<{ url: string; metrics: number }>();

    prom = await startPrometheus({ ingress: [`127.0.0.1:${ing.metrics}`], worker: [`127.0.0.1:${workerPort}`], edge: [`127.0.0.1:${site.metrics}`] });
    h.defer(() => prom.stop());
    await pollUntil(async () => (await prom.scalar('up{job=~"ingress|worker|edge"}')) === 3 || undefined, { what: "all three scraped", timeoutMs: 20_000 });

    // a window the worker process runs, fed by a device through the ingress process
    const service = issueUser(hub.keystore, { account: "fleet", role: "service", name: "metrics-components" }).creds ?? "";
    const nc = await connectAs(hub.urls, service);
    h.defer(() => nc.close());
    await saveDefinition(nc, { name: "c10", source: { filter: "telemetry.plant-c.>" }, window: { kind: "tumbling", sizeMs: 10_000 }, aggregates: ["count"], outOfOrderMs: 0 });
    const jwt = issueUser(hub.keystore, { account: "fleet", role: "mqtt", name: "meter-c", site: "plant-c" }).jwt;
    const device = await mqtt.connectAsync(`mqtt://127.0.0.1:${ing.tcp}`, { username: "meter-c", password: jwt, clientId: "meter-c", reconnectPeriod: 0, protocolVersion: 5 });
    h.defer(() => device.endAsync());
    const now = Date.now();
    for (let i = 0; i < READINGS; i++) await device.publishAsync("telemetry/plant-c/meter-c/temp", JSON.stringify({ value: i, ts: now + i }), { qos: 1 });

    // readings at the site, into its store-and-forward stream
    const dev = issueUser(hub.keystore, { account: "fleet", role: "device", name: "sensor-m", site: "site-m" });
    const snc = await pollUntil(() => connectAs([site.url], dev.creds ?? "", { inboxPrefix: deviceInboxPrefix("site-m", "sensor-m") }).catch(() => undefined), { what: "the site to trust the device", timeoutMs: 20_000 });
    h.defer(() => snc.close());
    const sjs = jetstream(snc, { domain: "site-m" });
    for (let i = 0; i < SITE_READINGS; i++) await sjs.publish("telemetry.site-m.sensor-m.temp", JSON.stringify({ value: i, ts: now + i }));

    const expectations: [string, number][] = [
      ['fabric_mqtt_publishes_total{job="ingress",qos="1",result="stored"}', READINGS],
      ['fabric_mqtt_publish_ack_seconds_count{job="ingress",qos="1"}', READINGS],
      ['fabric_mqtt_connections{job="ingress",protocol_version="5.0"}', 1],
      ['fabric_window_events_total{job="worker",window="c10"}', READINGS],
      ['fabric_edge_link_up{job="edge",site="site-m"}', 1],
    ];
    const want = Object.fromEntries(expectations);
    let last: Record<string, number> = {};
    await pollUntil(
      async () => {
        last = Object.fromEntries(await Promise.all(expectations.map(async ([q]) => [q, await prom.scalar(q)] as const)));
        return expectations.every(([q, v]) => last[q] === v) || undefined;
      },
      { what: "Prometheus to see the load", timeoutMs: 20_000, intervalMs: 250 },
    ).catch(() => undefined);
    expect(last).toEqual(want);
    // the site's buffer holds what was published there, and its process metrics come with the same scrape
    await pollUntil(async () => (await prom.scalar('fabric_edge_buffer_bytes{job="edge",site="site-m",stream=~".*TELEMETRY.*"}')) > 0 || undefined, { what: "the site's buffer figure", timeoutMs: 20_000 });
    expect(await prom.scalar('process_resident_memory_bytes{job="worker"}')).toBeGreaterThan(0);
  });
});
