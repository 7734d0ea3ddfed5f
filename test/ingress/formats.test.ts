/**
 * Devices in their own layouts (issue 15): Telegraf's MQTT output (line protocol and JSON, batch or not, its
 * homie-v4 layout), Homie v4 property values, and the seeds' legacy `sensors/temp` JSON with the device in the
 * payload, through the real ingress into TELEMETRY; bad input to REJECTED with the reason.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jetstreamManager } from "@nats-io/jetstream";
import { pollUntil } from "../../fabric/core/index.js";
import { issueUser } from "../../identity/index.js";
import { LineProtocolError, parseLine, parseLines } from "../../ingress/formats/influx.js";
import { Harness } from "../harness/index.js";
import { connectMqtt, mqttTestbed, versionOptions, type MqttTestbed } from "./mqtt-helpers.js";

describe("line protocol", () => {
  it("parses measurements, escaped tags, every field type and timestamps; refuses malformed lines naming what is wrong", () => {
    expect(parseLine('weather,location=us-midwest,sea\\ level=at\\,sea temperature=82,humidity=71i,ok=t,desc="hot \\"day\\"" 1465839830100400200')).toEqual({
      measurement: "weather",
      tags: { location: "us-midwest", "sea level": "at,sea" },
      fields: { temperature: 82, humidity: 71, ok: true, desc: 'hot "day"' },
      // nanoseconds beyond 2^53: kept to within a microsecond, plenty for readings in milliseconds
      timestamp: Number("1465839830100400200"),
    });
    expect(parseLine("# a comment")).toBeUndefined();
    expect(parseLines("cpu usage=1\n\nmem used=2u\n")).toHaveLength(2);
    for (const [line, message] of [
      ["cpu", /needs a measurement, fields/],
      ["cpu usage", /not key=value/],
      ["cpu usage=abc", /not a number, string or boolean/],
      ['cpu usage="open', /not closed/],
      ["cpu usage=1 12x", /timestamp/],
      [",host=a usage=1", /measurement is empty/],
    ] as const) {
      expect(() => parseLine(line)).toThrow(LineProtocolError);
      expect(() => parseLine(line)).toThrow(message);
    }
  });
});

const h = new Harness();
let t: MqttTestbed;
afterAll(() => h.dispose());
beforeAll(async () => {
  t = await mqttTestbed(h, "formats", {
    mappings: [{ topic: "sensors/{metric}", subject: "telemetry.legacy.{device}.{metric}", payload: { value: "value", ts: "ts", tsUnit: "s", device: "device" } }],
    formats: [
      { preset: "telegraf", site: "dc-1" },
      { topic: "telegraf-json/#", format: "telegraf-json", site: "dc-1" },
      { preset: "homie" },
    ],
  });
}, 60_000);

async function last(stream: string, subject: string): Promise<{ data: Record<string, unknown> | string; reason: string | undefined } | undefined> {
  const jsm = await jetstreamManager(t.nc);
  const info = await jsm.streams.info(stream, { subjects_filter: subject });
  if ((info.state.subjects?.[subject] ?? 0) === 0) return undefined;
  const m = await jsm.streams.getMessage(stream, { last_by_subj: subject });
  if (m === null) return undefined;
  const text = m.string();
  let data: Record<string, unknown> | string = text;
  try {
    data = JSON.parse(text) as Record<string, unknown>;
  } catch {
    // not JSON: kept as it is
  }
  return { data, reason: m.header.get("Fabric-Reject-Reason") || undefined };
}

const stored = (stream: string, subject: string) => pollUntil(() => last(stream, subject), { timeoutMs: 10_000, what: subject });

describe("Telegraf's MQTT output", () => {
  it("line protocol, a batch of lines on topic telegraf/<host>/<name>: one reading per numeric or boolean field, time from ns", async () => {
    // the exact bytes Telegraf's influx serializer writes (one metric per line, a newline after each)
    const batch = "cpu,cpu=cpu-total,host=raynor usage_idle=98.7,usage_user=0.8 1458229140000000000\nmem,host=raynor used=1042i,available_percent=71.5,swap=false 1458229140000000000\n";
    await t.pub.publishAsync("telegraf/raynor/cpu", batch, { qos: 1 });
    expect((await stored("TELEMETRY", "telemetry.dc-1.raynor.cpu_usage_idle")).data).toEqual({ value: 98.7, ts: 1458229140000, tags: { cpu: "cpu-total", host: "raynor" } });
    expect((await stored("TELEMETRY", "telemetry.dc-1.raynor.mem_used")).data).toMatchObject({ value: 1042, ts: 1458229140000 });
    expect((await stored("TELEMETRY", "telemetry.dc-1.raynor.mem_swap")).data).toMatchObject({ value: 0 });
  });

  it("JSON, one metric and a batch (seconds)", async () => {
    await t.pub.publishAsync("telegraf-json/raynor/docker", JSON.stringify({ fields: { field_1: 30, n_images: 660 }, name: "docker", tags: { host: "raynor" }, timestamp: 1458229140 }), { qos: 1 });
    expect((await stored("TELEMETRY", "telemetry.dc-1.raynor.docker_n_images")).data).toMatchObject({ value: 660, ts: 1458229140000 });
    const batch = { metrics: [{ fields: { load1: 0.5 }, name: "system", tags: { host: "edge-7" }, timestamp: 1458229141 }, { fields: { load1: 1.5 }, name: "system", tags: { host: "edge-8" }, timestamp: 1458229141 }] };
    await t.pub.publishAsync("telegraf-json/batch", JSON.stringify(batch), { qos: 1 });
    expect((await stored("TELEMETRY", "telemetry.dc-1.edge-8.system_load1")).data).toMatchObject({ value: 1.5 });
  });

  it("malformed line protocol goes to REJECTED with the reason; nothing of it is stored", async () => {
    await t.pub.publishAsync("telegraf/bad/cpu", "cpu,host=bad usage_idle=98.7\ncpu,host=bad usage=abc", { qos: 1 }).catch(() => undefined);
    const r = await stored("REJECTED", "rejected.telegraf.bad.cpu");
    expect(r.reason).toMatch(/line protocol: line 2: field usage: value "abc"/);
    expect(await last("TELEMETRY", "telemetry.dc-1.bad.cpu_usage_idle")).toBeUndefined();
  });
});

describe("Homie v4", () => {
  it("property values become readings under the device's own subjects; attributes stay retained; another device's name is refused", async () => {
    const dev = issueUser(t.hub.keystore, { account: "fleet", role: "mqtt", name: "super-car", site: "garage" });
    const c = (await connectMqtt(h, t.url, { ...versionOptions(4), clientId: "super-car", username: "super-car", password: dev.jwt })).client;
    await c.publishAsync("homie/super-car/$homie", "4.0", { qos: 1, retain: true });
    await c.publishAsync("homie/super-car/$state", "ready", { qos: 1, retain: true });
    await c.publishAsync("homie/super-car/engine/temperature", "21.5", { qos: 1 });
    await c.publishAsync("homie/super-car/engine/running", "true", { qos: 1 });
    expect((await stored("TELEMETRY", "telemetry.garage.super-car.engine_temperature")).data).toMatchObject({ value: 21.5 });
    expect((await stored("TELEMETRY", "telemetry.garage.super-car.engine_running")).data).toMatchObject({ value: 1 });
    // a string value is no reading: REJECTED with why
    await c.publishAsync("homie/super-car/engine/mode", "eco", { qos: 1 });
    expect((await stored("REJECTED", "rejected.telemetry.garage.super-car.engine_mode")).reason).toMatch(/not a number or boolean/);
    // claiming another device's name: refused (MQTT 3 acknowledges), kept in REJECTED with the reason
    await c.publishAsync("homie/other-car/engine/temperature", "99", { qos: 1 });
    expect((await stored("REJECTED", "rejected.homie.other-car.engine.temperature")).reason).toMatch(/super-car may not publish telemetry.garage.other-car/);
    expect(await last("TELEMETRY", "telemetry.garage.other-car.engine_temperature")).toBeUndefined();
    await c.endAsync();
  });
});

describe("the seeds' legacy example", () => {
  it("mosquitto_pub -t sensors/temp -m '{\"device\":\"d1\",\"value\":23.5,\"ts\":1708700000}' is a reading of device d1, in ms", async () => {
    await t.pub.publishAsync("sensors/temp", '{"device":"d1","value":23.5,"ts":1708700000}', { qos: 1 });
    expect((await stored("TELEMETRY", "telemetry.legacy.d1.temp")).data).toEqual({ value: 23.5, ts: 1708700000000 });
    await t.pub.publishAsync("sensors/temp", '{"device":"No Such","value":1,"ts":1}', { qos: 1 }).catch(() => undefined);
    expect((await stored("REJECTED", "rejected.sensors.temp")).reason).toMatch(/no device name/);
  });
});

