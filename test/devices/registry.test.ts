/**
 * The device registry (issue 15): an entry for every device issued or first seen, live state from nats-server's
 * advisories (NATS clients) and the MQTT ingress (its clients), Homie attributes, operators' metadata.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pollUntil } from "../../fabric/core/index.js";
import { DeviceRegistry, type DeviceRecord } from "../../devices/index.js";
import { issueUser } from "../../identity/index.js";
import { connectAs, Harness, runCli, startTestHub, type TestHub } from "../harness/index.js";
import { connectMqtt, mqttUrl, versionOptions } from "../ingress/mqtt-helpers.js";

const h = new Harness();
let hub: TestHub;
let registry: DeviceRegistry;

afterAll(() => h.dispose());
beforeAll(async () => {
  hub = await startTestHub(h, { mqtt: true, ingress: { formats: [{ preset: "homie" }] }, windows: false, sinks: false });
  const svc = issueUser(hub.keystore, { account: "fleet", role: "service", name: "registry-reader" });
  const nc = await connectAs(hub.urls, svc.creds ?? "");
  h.defer(() => nc.close());
  registry = await DeviceRegistry.open(nc);
}, 60_000);

const until = (name: string, site: string, ok: (d: DeviceRecord) => boolean): Promise<DeviceRecord> =>
  pollUntil(async () => {
    const d = await registry.get(name, site);
    return d !== undefined && ok(d) ? d : undefined;
  }, { timeoutMs: 10_000, intervalMs: 100, what: `device ${site}/${name}` });

describe("device registry", () => {
  it("an issued device has an entry; connecting over NATS makes it online, closing offline", async () => {
    const dev = issueUser(hub.keystore, { account: "fleet", role: "device", name: "pump-1", site: "plant-r" });
    await hub.devices?.syncIssued();
    const issued = await until("pump-1", "plant-r", () => true);
    expect(issued).toMatchObject({ source: "issued", role: "device", keys: [dev.record.publicKey], state: { online: false } });
    const nc = await connectAs(hub.urls, dev.creds ?? "");
    expect((await until("pump-1", "plant-r", (d) => d.state.online)).state).toMatchObject({ online: true, protocol: "nats", connections: 1 });
    await nc.close();
    expect((await until("pump-1", "plant-r", (d) => !d.state.online)).state.connections).toBe(0);
  });

  it("an MQTT device through the ingress: first seen at its connect, online with its protocol, offline when it goes", async () => {
    const dev = issueUser(hub.keystore, { account: "fleet", role: "mqtt", name: "meter-4", site: "plant-r" });
    const { client } = await connectMqtt(h, mqttUrl(hub), { ...versionOptions(5), clientId: "meter-4", username: "meter-4", password: dev.jwt });
    expect((await until("meter-4", "plant-r", (d) => d.state.online)).state.protocol).toBe("mqtt-5.0");
    await client.endAsync();
    await until("meter-4", "plant-r", (d) => !d.state.online);
  });

  it("a Homie device's attributes fill its entry and $state drives its online state", async () => {
    const dev = issueUser(hub.keystore, { account: "fleet", role: "mqtt", name: "heater-2", site: "plant-r" });
    const { client } = await connectMqtt(h, mqttUrl(hub), { ...versionOptions(4), clientId: "heater-2", username: "heater-2", password: dev.jwt });
    await client.publishAsync("homie/heater-2/$homie", "4.0", { qos: 1, retain: true });
    await client.publishAsync("homie/heater-2/$name", "Living room heater", { qos: 1, retain: true });
    await client.publishAsync("homie/heater-2/$state", "ready", { qos: 1, retain: true });
    const d = await until("heater-2", "plant-r", (x) => x.homie?.["$state"] === "ready");
    expect(d.homie).toMatchObject({ $homie: "4.0", $name: "Living room heater" });
    expect(d.state.online).toBe(true);
    await client.publishAsync("homie/heater-2/$state", "lost", { qos: 1, retain: true });
    await until("heater-2", "plant-r", (x) => x.homie?.["$state"] === "lost" && !x.state.online);
    // another device's attributes are not taken from it
    await client.publishAsync("homie/other-heater/$state", "ready", { qos: 1, retain: true });
    await client.endAsync();
    expect(await registry.get("other-heater", "plant-r")).toBeUndefined();
  });

  it("operators set metadata from the command line; bad keys are refused naming them", async () => {
    const flags = ["--store", hub.keystoreDir, "--data", hub.dataDir, "--server", hub.urls[0] ?? ""];
    const set = await runCli("fabric", ["devices", "set", "pump-1", "--site", "plant-r", "--model", "P-100", "--firmware", "2.4.1", "--meta", "room=boiler", ...flags]);
    expect(set.code, set.stderr).toBe(0);
    const ls = await runCli("fabric", ["devices", "ls", "--site", "plant-r", "--json", ...flags]);
    const pump = (JSON.parse(ls.stdout) as DeviceRecord[]).find((d) => d.name === "pump-1");
    expect(pump?.metadata).toEqual({ model: "P-100", firmware: "2.4.1", room: "boiler" });
    const bad = await runCli("fabric", ["devices", "set", "pump-1", "--site", "plant-r", "--meta", "Bad Key=x", ...flags]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/metadata key "Bad Key"/);
    const missing = await runCli("fabric", ["devices", "describe", "nope", "--site", "plant-r", ...flags]);
    expect(missing.stderr).toMatch(/no device plant-r\/nope/);
  });
});
