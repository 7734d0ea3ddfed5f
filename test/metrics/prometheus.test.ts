import { afterAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import mqtt from "mqtt";
import { ConsumerServiceClient } from "../../proto/gen/fabric/v1/consumer.js";
import { pollUntil } from "../../fabric/core/index.js";
import { issueUser, Keystore } from "../../identity/index.js";
import { saveDefinition } from "../../streams/index.js";
import { connectAs, grpcClient, Harness, startCli } from "../harness/index.js";
import { startPrometheus } from "../harness/prometheus.js";
import { Consume, range } from "../grpc/consumer-client.js";

/**
 * `fabric up` in a process of its own (its metrics are its own), a private Prometheus scraping it every second,
 * a short load through MQTT and gRPC, and the figures read back through Prometheus's query API.
 */
const h = new Harness();
afterAll(() => h.dispose());

interface Ready {
  urls: string[];
  devCreds: string;
  mqtt: { tcp: number };
  grpc: number;
  metrics: { port: number; url: string };
}

const QOS1 = 200;
const QOS0 = 50;
const TOTAL = QOS1 + QOS0;

describe("metrics through a real Prometheus", () => {
  it("scrapes the hub during a load and sees what the load did: publishes by QoS, an auth failure, Consume deliveries and settlements, stream messages, window events", async () => {
    const home = h.tempDir("fabric-home-");
    const args = ["up", "--host", "127.0.0.1", "--port", "0", "--monitor-port", "0", "--leaf-port", "0", "--mqtt-port", "0", "--mqtt-ws-port", "0", "--grpc-port", "0", "--metrics-port", "0", "--no-status-page", "--json"];
    const hub = startCli("fabric", args, { env: { FABRIC_HOME: home } });
    h.defer(async () => void (await hub.signal("SIGTERM")));
    const ready = await hub.json<Ready>();
    expect(ready.metrics.port).toBeGreaterThan(0);

    const prom = await startPrometheus({ hub: [`127.0.0.1:${ready.metrics.port}`] });
    h.defer(() => prom.stop());
    await pollUntil(async () => (await prom.scalar('up{job="hub"}')) === 1, { what: "the hub scraped", timeoutMs: 15_000 });

    // a window over what the devices send, so the hub's worker has events to count
    const service = readFileSync(ready.devCreds, "utf8");
    const nc = await connectAs(ready.urls, service);
    h.defer(() => nc.close());
    await saveDefinition(nc, { name: "m10", source: { filter: "telemetry.plant-m.>" }, window: { kind: "tumbling", sizeMs: 10_000 }, aggregates: ["count"], outOfOrderMs: 0 });

    // --- MQTT: a refused credential, then QoS 1 and QoS 0 publishes of one device ---
    const ks = Keystore.open(join(home, "keys"));
    const jwt = await ks.withLock(() => issueUser(ks, { account: "fleet", role: "mqtt", name: "meter-1", site: "plant-m" }).jwt);
    const url = `mqtt://127.0.0.1:${ready.mqtt.tcp}`;
    const refusedClient = mqtt.connect(url, { username: "meter-1", password: "not-a-credential", reconnectPeriod: 0, protocolVersion: 4 });
    await new Promise<void>((resolve) => refusedClient.once("error", () => resolve()));
    refusedClient.end(true);
    const device = await mqtt.connectAsync(url, { username: "meter-1", password: jwt, clientId: "meter-1", reconnectPeriod: 0, protocolVersion: 4 });
    h.defer(() => device.endAsync());
    const now = Date.now();
    await Promise.all(range(QOS1).map((i) => device.publishAsync("telemetry/plant-m/meter-1/temp", JSON.stringify({ value: i, ts: now + i }), { qos: 1 })));
    for (const i of range(QOS0)) await device.publishAsync("telemetry/plant-m/meter-1/hum", JSON.stringify({ value: i, ts: now + i }), { qos: 0 });

    // --- gRPC: a Consume of every stored message, each acknowledged ---
    const client = grpcClient(ConsumerServiceClient, ready.grpc);
    h.defer(() => client.close());
    const consume = new Consume(client, service).open({ filterSubjects: ["telemetry.plant-m.>"] });
    await consume.opening();
    consume.credit(TOTAL);
    await consume.count(TOTAL);
    consume.ack(consume.received());
    consume.call.end();
    expect(await consume.ending()).toBeUndefined();

    // --- what Prometheus saw (each figure once a scrape after the load has it) ---
    const expectations: [string, number][] = [
      ['fabric_mqtt_publishes_total{qos="1",result="stored"}', QOS1],
      ['fabric_mqtt_publishes_total{qos="0",result="forwarded"}', QOS0],
      ['fabric_mqtt_publish_ack_seconds_count{qos="1"}', QOS1],
      ['fabric_mqtt_auth_failures_total{reason="bad_user_name_or_password"}', 1],
      ['fabric_mqtt_connects_total{protocol_version="3.1.1"}', 1],
      ['fabric_mqtt_connections{protocol_version="3.1.1"}', 1],
      ['fabric_grpc_consume_deliveries_total{stream="TELEMETRY"}', TOTAL],
      ['fabric_grpc_consume_settlements_total{kind="ack"}', TOTAL],
      ['fabric_grpc_calls_total{method="fabric.v1.ConsumerService/Consume",code="OK"}', 1],
      ['fabric_grpc_open_streams{method="fabric.v1.ConsumerService/Consume"}', 0],
      ['nats_jetstream_stream_messages{stream="TELEMETRY"}', TOTAL],
      ['fabric_window_events_total{window="m10"}', TOTAL],
    ];
    const seen = async (): Promise<Record<string, number>> => Object.fromEntries(await Promise.all(expectations.map(async ([q]) => [q, await prom.scalar(q)] as const)));
    const want = Object.fromEntries(expectations);
    let last: Record<string, number> = {};
    await pollUntil(
      async () => {
        last = await seen();
        return expectations.every(([q, v]) => last[q] === v);
      },
      { what: "Prometheus to see the load", timeoutMs: 20_000, intervalMs: 250 },
    ).catch(() => undefined);
    expect(last).toEqual(want);

    // the hub's nats-server figures and the process's own came with the same scrape
    expect(await prom.scalar('nats_server_up{job="hub"}')).toBe(1);
    expect(await prom.scalar("nats_server_connections")).toBeGreaterThanOrEqual(3); // the hub's own, the device's ingress, the gateway, this test
    expect(await prom.scalar('nats_jetstream_consumer_num_pending{stream="TELEMETRY"}')).toBe(0);
    expect(await prom.scalar("process_resident_memory_bytes")).toBeGreaterThan(0);
    expect(await prom.scalar("fabric_identity_credentials_issued_total")).toBeGreaterThan(0); // the hub's own service credentials
  });
});
