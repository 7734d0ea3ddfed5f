/**
 * The device registry (issue 15): an entry for every device issued or first seen, live state from nats-server's
 * advisories (NATS clients) and the MQTT ingress (its clients), Homie attributes, operators' metadata.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pollUntil } from "../../fabric/core/index.js";
import { DeviceRegistry, type DeviceRecord } from "../../devices/index.js";
import { createKeyPair, issueBootstrap, issueUser, provisionDevice } from "../../identity/index.js";
import { status, type ServiceError } from "@grpc/grpc-js";
import { DeviceServiceClient, DeviceServiceService } from "../../proto/gen/fabric/v1/device.js";
import { authFor, connectAs, grpcClient, Harness, runCli, startTestHub, type TestHub } from "../harness/index.js";
import { connectMqtt, mqttUrl, versionOptions } from "../ingress/mqtt-helpers.js";

const h = new Harness();
let hub: TestHub;
let registry: DeviceRegistry;

afterAll(() => h.dispose());
beforeAll(async () => {
  hub = await startTestHub(h, { mqtt: true, grpc: true, ingress: { formats: [{ preset: "homie" }] }, windows: false, sinks: false });
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

  it("a device provisioned through the identity service is in the registry at once", async () => {
    const boot = issueBootstrap(hub.keystore, "fleet", "plant-p", 1, 600);
    const kp = createKeyPair("user");
    await provisionDevice({ servers: hub.urls, bootstrapCreds: boot.creds, token: boot.tokens[0] ?? "", name: "valve-9", keyPair: kp });
    const d = await pollUntil(() => registry.get("valve-9", "plant-p"), { timeoutMs: 5_000, intervalMs: 100, what: "valve-9 in the registry" });
    expect(d).toMatchObject({ source: "issued", role: "device", keys: [kp.publicKey] });
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

  it("DeviceService over gRPC: list and get devices, read a twin, update desired with a version; refusals with their codes", async () => {
    const c = grpcClient(DeviceServiceClient, hub.grpc ?? 0);
    h.defer(() => c.close());
    const svc = issueUser(hub.keystore, { account: "fleet", role: "service", name: "device-admin" }).creds ?? "";
    const M = DeviceServiceService;
    const call = <R>(f: (cb: (e: ServiceError | null, r: R) => void) => void): Promise<R> => new Promise((resolve, reject) => f((e, r) => (e === null ? resolve(r) : reject(e))));
    const list = await call<{ devices: { name: string; online: boolean; metadata: Record<string, string> }[] }>((cb) => c.listDevices({ site: "plant-r" }, authFor(svc, M.listDevices.path), cb));
    expect(list.devices.map((d) => d.name)).toEqual(expect.arrayContaining(["pump-1", "meter-4", "heater-2"]));
    const got = await call<{ device?: { metadata: Record<string, string>; role: string } }>((cb) => c.getDevice({ site: "plant-r", name: "pump-1" }, authFor(svc, M.getDevice.path), cb));
    expect(got.device).toMatchObject({ role: "device", metadata: { model: "P-100" } });
    const upd = await call<{ twin?: { version: number; deltaJson: string } }>((cb) =>
      c.updateDesired({ site: "plant-r", name: "pump-1", patchJson: '{"speed": 3}', expectedVersion: 0 }, authFor(svc, M.updateDesired.path), cb),
    );
    expect(upd.twin).toMatchObject({ version: 1, deltaJson: '{"speed":3}' });
    const twin = await call<{ twin?: { desiredJson: string } }>((cb) => c.getTwin({ site: "plant-r", name: "pump-1" }, authFor(svc, M.getTwin.path), cb));
    expect(JSON.parse(twin.twin?.desiredJson ?? "{}")).toEqual({ speed: 3 });
    const refused = async (f: (cb: (e: ServiceError | null, r: unknown) => void) => void): Promise<[status, unknown]> => {
      try {
        await call(f);
      } catch (err) {
        const e = err as ServiceError;
        return [e.code, e.metadata.get("fabric-error-code")[0]];
      }
      throw new Error("accepted");
    };
    expect(await refused((cb) => c.updateDesired({ site: "plant-r", name: "pump-1", patchJson: '{"speed": 4}', expectedVersion: 0 }, authFor(svc, M.updateDesired.path), cb))).toEqual([
      status.FAILED_PRECONDITION,
      "FABRIC_ERR_FAILED_PRECONDITION",
    ]);
    expect(await refused((cb) => c.updateDesired({ site: "plant-r", name: "pump-1", patchJson: "[1]" }, authFor(svc, M.updateDesired.path), cb))).toEqual([status.INVALID_ARGUMENT, "FABRIC_ERR_INVALID_INPUT"]);
    expect(await refused((cb) => c.getDevice({ site: "plant-r", name: "nope" }, authFor(svc, M.getDevice.path), cb))).toEqual([status.NOT_FOUND, "FABRIC_ERR_NOT_FOUND"]);
    expect(await refused((cb) => c.getDevice({ site: "Bad Site", name: "x" }, authFor(svc, M.getDevice.path), cb))).toEqual([status.INVALID_ARGUMENT, "FABRIC_ERR_INVALID_INPUT"]);
    // a device's own credential may not read the registry
    const dev = issueUser(hub.keystore, { account: "fleet", role: "device", name: "snoop", site: "plant-r" }).creds ?? "";
    expect(await refused((cb) => c.getDevice({ site: "plant-r", name: "pump-1" }, authFor(dev, M.getDevice.path), cb))).toEqual([status.PERMISSION_DENIED, "FABRIC_ERR_PERMISSION_DENIED"]);
  });
});
