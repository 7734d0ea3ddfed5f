/**
 * Payload compression as an opt-in codec (issue 16): a gzip payload marked `content-encoding: gzip` (an MQTT 5
 * user property) is stored inflated by the ingress; a NATS publisher's gzip payload with the `Content-Encoding`
 * header is stored as it came and read inflated by the window workers; a payload that is not gzip is REJECTED.
 */
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { headers } from "@nats-io/transport-node";
import { CONTENT_ENCODING_HEADER, decodePayload, messagePayload, pollUntil } from "../../fabric/core/index.js";
import { LATEST_BUCKET, saveDefinition } from "../../streams/index.js";
import { Harness } from "../harness/index.js";
import { mqttTestbed, type MqttTestbed } from "./mqtt-helpers.js";

describe("decodePayload", () => {
  it("inflates gzip, passes identity, refuses other encodings, bad gzip and a bomb", () => {
    const json = Buffer.from('{"value":1,"ts":2}');
    expect(Buffer.from(decodePayload(gzipSync(json), "gzip")).toString()).toBe(json.toString());
    expect(decodePayload(json, undefined)).toBe(json);
    expect(() => decodePayload(json, "br")).toThrow(/content encoding "br" is not supported/);
    expect(() => decodePayload(json, "gzip")).toThrow(/not gzip/);
    expect(() => decodePayload(gzipSync(Buffer.alloc(2_000_000)), "gzip", 1_000_000)).toThrow(/more than 1000000 bytes/);
    const h = headers();
    h.set(CONTENT_ENCODING_HEADER, "gzip");
    expect(Buffer.from(messagePayload({ data: gzipSync(json), headers: h })).toString()).toBe(json.toString());
  });
});

const h = new Harness();
let t: MqttTestbed;
afterAll(() => h.dispose());
beforeAll(async () => {
  t = await mqttTestbed(h, "encoding");
}, 60_000);

describe("compressed payloads through the fabric", () => {
  it("MQTT 5 with content-encoding gzip: stored inflated, without the property; not gzip: REJECTED with the reason", async () => {
    const reading = JSON.stringify({ value: 7.5, ts: Date.now() });
    await t.pub.publishAsync("telemetry/zip-site/z1/temp", gzipSync(reading), { qos: 1, properties: { userProperties: { "content-encoding": "gzip" } } });
    const jsm = await jetstreamManager(t.nc);
    const m = await pollUntil(async () => (await jsm.streams.getMessage("TELEMETRY", { last_by_subj: "telemetry.zip-site.z1.temp" }).catch(() => null)) ?? undefined, { timeoutMs: 10_000 });
    expect(m.string()).toBe(reading);
    expect(m.header.get("content-encoding")).toBe("");
    await expect(t.pub.publishAsync("telemetry/zip-site/z1/hum", "plain text", { qos: 1, properties: { userProperties: { "content-encoding": "gzip" } } })).rejects.toThrow(/153|payload format/i);
    const r = await jsm.streams.getMessage("REJECTED", { last_by_subj: "rejected.telemetry.zip-site.z1.hum" });
    expect(r?.header.get("Fabric-Reject-Reason")).toMatch(/not gzip/);
  });

  it("a NATS publisher's gzip payload is stored with its header and a window worker reads it inflated", async () => {
    await saveDefinition(t.nc, { name: "zip10", source: { filter: "telemetry.zip-w.>" }, window: { kind: "tumbling", sizeMs: 10_000 }, aggregates: ["count", "avg"], outOfOrderMs: 0 });
    const base = Math.ceil(Date.now() / 10_000) * 10_000 - 1_000_000_000;
    const js = jetstream(t.nc);
    for (const [s, v] of [[1, 20], [5, 22], [12, 30]] as const) {
      const hd = headers();
      hd.set(CONTENT_ENCODING_HEADER, "gzip");
      await js.publish("telemetry.zip-w.d1.temp", gzipSync(JSON.stringify({ ts: base + s * 1_000, value: v })), { headers: hd });
    }
    const latest = await new Kvm(t.nc).open(LATEST_BUCKET);
    const result = await pollUntil(async () => (await latest.get("zip10.zip-w.d1.temp"))?.json<Record<string, unknown>>(), { what: "a zip10 result", timeoutMs: 20_000 });
    expect(result).toMatchObject({ start: base, kind: "final", count: 2, avg: 21 });
  });
});
