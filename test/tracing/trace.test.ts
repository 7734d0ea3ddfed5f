/**
 * W3C trace context through the fabric (issue 11): an MQTT 5 `traceparent` user property is stored in the
 * message's headers and reaches gRPC deliveries, window results and (from SendCommand's metadata) MQTT command
 * deliveries. Off (no OTLP endpoint), the device's value is stored as it came and no span is made; on (here with
 * the SDK's in-memory exporter), each hop is a span of the device's trace, child of the previous hop.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { InMemorySpanExporter, type ReadableSpan } from "@opentelemetry/sdk-trace-base";
import type { MqttClient } from "mqtt";
import { initTracing, parseTraceparent, pollUntil, tracingEnabled, SPAN, type Tracing } from "../../fabric/core/index.js";
import { CommandServiceClient, CommandServiceService, type SendCommandResponse } from "../../proto/gen/fabric/v1/command.js";
import { ConsumerServiceClient } from "../../proto/gen/fabric/v1/consumer.js";
import { issueUser } from "../../identity/index.js";
import { saveDefinition } from "../../streams/index.js";
import { authFor, connectAs, grpcClient, Harness, startTestHub, testLogger, type TestHub } from "../harness/index.js";
import { Consume } from "../grpc/consumer-client.js";
import { connectMqtt, Inbox, mqttDevice, mqttUrl } from "../ingress/mqtt-helpers.js";

const h = new Harness();
let hub: TestHub;
let service: string;
let jsm: JetStreamManager;
const exporter = new InMemorySpanExporter();
let tracing: Tracing | undefined;

afterAll(async () => {
  await tracing?.shutdown();
  await h.dispose();
});
beforeAll(async () => {
  hub = await startTestHub(h, { mqtt: true, grpc: true });
  service = issueUser(hub.keystore, { account: "fleet", role: "service", name: "tracer" }).creds ?? "";
  const nc = await connectAs(hub.urls, service);
  h.defer(() => nc.close());
  jsm = await jetstreamManager(nc);
  await saveDefinition(nc, { name: "trace-w", source: { stream: "TELEMETRY", filter: "telemetry.plant-a.w1.>" }, window: { kind: "tumbling", sizeMs: 1000 }, aggregates: ["count"], outOfOrderMs: 0, partitions: 1 });
});

/** A device's own traceparent: a fresh trace id and span id, sampled. */
function deviceTraceparent(): string {
  return `00-${randomBytes(16).toString("hex")}-${randomBytes(8).toString("hex")}-01`;
}

async function device(name: string): Promise<MqttClient> {
  const d = mqttDevice(hub, name);
  return (await connectMqtt(h, mqttUrl(hub), { protocolVersion: 5, clientId: name, username: name, password: d.jwt })).client;
}

async function publish(c: MqttClient, topic: string, body: object, userProperties: Record<string, string>): Promise<void> {
  await c.publishAsync(topic, JSON.stringify(body), { qos: 1, properties: { userProperties } });
}

/** The headers of the last message stored on a subject. */
async function storedHeaders(stream: string, subject: string): Promise<{ traceparent: string; tracestate: string; seq: number }> {
  const m = await pollUntil(() => jsm.streams.getMessage(stream, { last_by_subj: subject }).catch(() => undefined).then((x) => x ?? undefined), { what: `a message on ${subject}` });
  return { traceparent: m.header.get("traceparent"), tracestate: m.header.get("tracestate"), seq: m.seq };
}

const spanNamed = (name: string, traceId: string): Promise<ReadableSpan> =>
  pollUntil(() => exporter.getFinishedSpans().find((s) => s.name === name && s.spanContext().traceId === traceId), { what: `span "${name}" of trace ${traceId}` });

describe("tracing off (no OTLP endpoint)", () => {
  it("stores the device's traceparent and tracestate unchanged, makes no span, and drops a malformed traceparent", async () => {
    expect(await initTracing({ serviceName: "fabric-test", logger: testLogger(), env: {} })).toBeUndefined();
    expect(tracingEnabled()).toBe(false);
    const c = await device("off1");
    const tp = deviceTraceparent();
    await publish(c, "telemetry/plant-a/off1/temp", { value: 1, ts: Date.now() }, { traceparent: tp, tracestate: "vendor=abc" });
    expect(await storedHeaders("TELEMETRY", "telemetry.plant-a.off1.temp")).toMatchObject({ traceparent: tp, tracestate: "vendor=abc" });
    // upper-case hex, an all-zero trace id: not W3C, not stored (with its tracestate)
    for (const bad of [tp.toUpperCase(), `00-${"0".repeat(32)}-${"1".repeat(16)}-01`]) {
      await publish(c, "telemetry/plant-a/off1/bad", { value: 2, ts: Date.now() }, { traceparent: bad, tracestate: "vendor=abc" });
      const stored = await storedHeaders("TELEMETRY", "telemetry.plant-a.off1.bad");
      expect(stored).toMatchObject({ traceparent: "", tracestate: "" });
    }
    expect(exporter.getFinishedSpans()).toHaveLength(0);
  });
});

describe("tracing on (in-memory exporter)", () => {
  beforeAll(async () => {
    tracing = await initTracing({ serviceName: "fabric-test", logger: testLogger(), exporter });
  });

  it("one trace from an MQTT publish to a gRPC delivery: mqtt publish → grpc deliver, the event carrying the delivery span", async () => {
    expect(tracingEnabled()).toBe(true);
    const tp = deviceTraceparent();
    const sent = parseTraceparent(tp);
    if (sent === undefined) throw new Error("bad test traceparent");
    const c = await device("d1");
    const client = grpcClient(ConsumerServiceClient, hub.grpc ?? 0);
    h.defer(() => client.close());
    const consume = new Consume(client, service).open({ stream: "TELEMETRY", filterSubjects: ["telemetry.plant-a.d1.temp"] });
    h.defer(() => consume.call.cancel());
    await consume.opening();
    consume.credit(10);
    await publish(c, "telemetry/plant-a/d1/temp", { value: 21.5, ts: Date.now() }, { traceparent: tp });
    await consume.count(1);
    const event = consume.received()[0]?.event;
    const delivered = parseTraceparent(event?.headers["traceparent"]);
    expect(delivered?.traceId).toBe(sent.traceId);

    const ingress = await spanNamed(SPAN.mqttPublish, sent.traceId);
    const deliver = await spanNamed(SPAN.grpcDeliver, sent.traceId);
    // the ingress span is the device's child; the stored message carries it; the delivery is its child
    expect(ingress.parentSpanContext?.spanId).toBe(sent.spanId);
    expect(ingress.attributes).toMatchObject({ "messaging.system": "nats", "messaging.destination.name": "telemetry.plant-a.d1.temp", "fabric.site": "plant-a", "fabric.device": "d1" });
    expect(parseTraceparent((await storedHeaders("TELEMETRY", "telemetry.plant-a.d1.temp")).traceparent)?.spanId).toBe(ingress.spanContext().spanId);
    expect(deliver.parentSpanContext?.spanId).toBe(ingress.spanContext().spanId);
    expect(delivered?.spanId).toBe(deliver.spanContext().spanId);
    expect(exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === sent.traceId).map((s) => s.name).sort()).toEqual([SPAN.grpcDeliver, SPAN.mqttPublish]);
  });

  it("a malformed traceparent is dropped: nothing stored, no span parented on it; a message without one gets no span", async () => {
    const before = exporter.getFinishedSpans().length;
    const c = await device("d2");
    await publish(c, "telemetry/plant-a/d2/temp", { value: 1, ts: Date.now() }, { traceparent: "00-abc-def-01" });
    await c.publishAsync("telemetry/plant-a/d2/none", JSON.stringify({ value: 1, ts: Date.now() }), { qos: 1 });
    expect((await storedHeaders("TELEMETRY", "telemetry.plant-a.d2.temp")).traceparent).toBe("");
    expect((await storedHeaders("TELEMETRY", "telemetry.plant-a.d2.none")).traceparent).toBe("");
    expect(exporter.getFinishedSpans().length).toBe(before);
  });

  it("a window result carries the trace of the reading that closed it, its span linking the other readings", async () => {
    const c = await device("w1");
    const [tp1, tp2] = [deviceTraceparent(), deviceTraceparent()];
    const t0 = Math.floor(Date.now() / 1000) * 1000 - 10_000;
    await publish(c, "telemetry/plant-a/w1/temp", { value: 1, ts: t0 + 100 }, { traceparent: tp1 });
    await publish(c, "telemetry/plant-a/w1/temp", { value: 2, ts: t0 + 2_100 }, { traceparent: tp2 }); // closes [t0, t0+1000)
    const [r1, r2] = [parseTraceparent(tp1), parseTraceparent(tp2)];
    if (r1 === undefined || r2 === undefined) throw new Error("bad test traceparent");
    const result = await spanNamed(SPAN.windowResult, r2.traceId);
    const ingress2 = await spanNamed(SPAN.mqttPublish, r2.traceId);
    const ingress1 = await spanNamed(SPAN.mqttPublish, r1.traceId);
    expect(result.parentSpanContext?.spanId).toBe(ingress2.spanContext().spanId);
    expect(result.links.map((l) => l.context.spanId)).toEqual([ingress1.spanContext().spanId]);
    expect(result.attributes).toMatchObject({ "messaging.destination.name": "agg.trace-w.plant-a.w1.temp", "fabric.window": "trace-w" });
    const stored = parseTraceparent((await storedHeaders("AGGREGATES", "agg.trace-w.plant-a.w1.temp")).traceparent);
    expect(stored).toMatchObject({ traceId: r2.traceId, spanId: result.spanContext().spanId });
  });

  it("SendCommand's metadata traceparent reaches the device as an MQTT 5 user property, through a command send span", async () => {
    const c = await device("v1");
    const inbox = new Inbox(c);
    await c.subscribeAsync("cmd/plant-a/v1/#", { qos: 1 });
    const tp = deviceTraceparent();
    const sent = parseTraceparent(tp);
    if (sent === undefined) throw new Error("bad test traceparent");
    const cmds = grpcClient(CommandServiceClient, hub.grpc ?? 0);
    h.defer(() => cmds.close());
    const md = authFor(service, CommandServiceService.sendCommand.path);
    md.set("traceparent", tp);
    md.set("tracestate", "caller=1");
    await new Promise<SendCommandResponse>((resolve, reject) => {
      cmds.sendCommand({ site: "plant-a", device: "v1", name: "open", payload: Buffer.from("{}"), idempotencyKey: "" }, md, (e, r) => (e === null ? resolve(r) : reject(e)));
    });
    const [got] = await inbox.waitFor((m) => m.topic === "cmd/plant-a/v1/open");
    const span = await spanNamed(SPAN.commandSend, sent.traceId);
    expect(span.parentSpanContext?.spanId).toBe(sent.spanId);
    const props = got?.packet.properties?.userProperties ?? {};
    expect(parseTraceparent(String(props["traceparent"]))).toMatchObject({ traceId: sent.traceId, spanId: span.spanContext().spanId });
    expect(props["tracestate"]).toBe("caller=1");
  });
});
