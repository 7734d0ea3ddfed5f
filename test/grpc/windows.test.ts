import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { status, type ServiceError } from "@grpc/grpc-js";
import { jetstream } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { pollUntil } from "../../fabric/core/index.js";
import { MAX_DEFINITION_BYTES } from "../../fabric/grpc/window-service.js";
import { addRole, issueUser, pushAccounts } from "../../identity/index.js";
import { WindowServiceClient, WindowServiceService, type AddWindowRequest, type Window } from "../../proto/gen/fabric/v1/window.js";
import { LATEST_BUCKET } from "../../streams/index.js";
import { authFor, connectAs, grpcClient, Harness, startTestHub, type TestHub } from "../harness/index.js";

const h = new Harness();
let hub: TestHub;
let service: string;
let nc: NatsConnection;
let c: WindowServiceClient;
afterAll(async () => {
  c.close();
  await h.dispose();
});
beforeAll(async () => {
  hub = await startTestHub(h, { grpc: true });
  service = issueUser(hub.keystore, { account: "fleet", role: "service", name: "window-admin" }).creds ?? "";
  nc = await connectAs(hub.urls, service);
  h.defer(() => nc.close());
  c = grpcClient(WindowServiceClient, hub.grpc ?? 0);
});

const M = WindowServiceService;
const refusal = (p: Promise<unknown>): Promise<ServiceError> => p.then(() => Promise.reject(new Error("expected a refusal")), (err: ServiceError) => err);
const fabricCode = (err: ServiceError): unknown => err.metadata.get("fabric-error-code")[0];

function add(creds: string, req: Partial<AddWindowRequest>): Promise<Window> {
  return new Promise((resolve, reject) =>
    c.addWindow({ definition: "", replace: false, ...req }, authFor(creds, M.addWindow.path), (e, r) => (e === null && r.window !== undefined ? resolve(r.window) : reject(e ?? new Error("no window")))),
  );
}
function list(creds: string): Promise<Window[]> {
  return new Promise((resolve, reject) => c.listWindows({}, authFor(creds, M.listWindows.path), (e, r) => (e === null ? resolve(r.windows) : reject(e))));
}
function get(creds: string, name: string): Promise<Window | undefined> {
  return new Promise((resolve, reject) => c.getWindow({ name }, authFor(creds, M.getWindow.path), (e, r) => (e === null ? resolve(r.window) : reject(e))));
}
function remove(creds: string, name: string): Promise<void> {
  return new Promise((resolve, reject) => c.removeWindow({ name }, authFor(creds, M.removeWindow.path), (e) => (e === null ? resolve() : reject(e))));
}

const WG10_YAML = `
name: wg10
source: { filter: "telemetry.plant-w.>" }
window: { kind: tumbling, sizeMs: 10000 }
aggregates: [count, avg]
outOfOrderMs: 0
`;

describe("gRPC WindowService", () => {
  let added: Window;

  it("adds a definition from YAML, refuses a second add without replace or at a stale revision, replaces at the expected one; list and get show it", async () => {
    added = await add(service, { definition: WG10_YAML });
    expect(added.name).toBe("wg10");
    expect(added.revision).toBeGreaterThan(0);
    expect(JSON.parse(added.definition)).toMatchObject({ name: "wg10", source: { stream: "TELEMETRY", filter: "telemetry.plant-w.>" }, key: [1, 2, 3], partitions: 8, aggregates: ["count", "avg"] });

    const exists = await refusal(add(service, { definition: WG10_YAML }));
    expect(exists.code).toBe(status.FAILED_PRECONDITION);
    expect(fabricCode(exists)).toBe("FABRIC_ERR_FAILED_PRECONDITION");
    expect(exists.details).toMatch(/exists \(revision \d+\)/);
    const stale = await refusal(add(service, { definition: WG10_YAML, expectedRevision: added.revision + 1000 }));
    expect(stale.code).toBe(status.FAILED_PRECONDITION);
    expect(stale.details).toContain(`is at revision ${added.revision}`);
    const both = await refusal(add(service, { definition: WG10_YAML, replace: true, expectedRevision: added.revision }));
    expect(both.code).toBe(status.INVALID_ARGUMENT);

    const json = JSON.stringify({ name: "wg10", source: { filter: "telemetry.plant-w.>" }, window: { kind: "tumbling", sizeMs: 10_000 }, aggregates: ["count", "avg", "max"], outOfOrderMs: 0 });
    const replaced = await add(service, { definition: json, expectedRevision: added.revision });
    expect(replaced.revision).toBeGreaterThan(added.revision);
    added = replaced;
    const forced = await add(service, { definition: json, replace: true });
    expect(forced.revision).toBeGreaterThan(added.revision);
    added = forced;

    expect((await list(service)).filter((w) => w.name === "wg10")).toEqual([added]);
    expect(await get(service, "wg10")).toEqual(added);
    expect(JSON.parse(added.definition)).toMatchObject({ aggregates: ["count", "avg", "max"] });
  });

  it("the hub's window worker runs the added definition: readings in TELEMETRY come out in agg_latest", async () => {
    const base = Math.ceil(Date.now() / 10_000) * 10_000 - 1_000_000_000;
    const js = jetstream(nc);
    for (const [s, v] of [[1, 20], [5, 22], [12, 30]] as const) await js.publish("telemetry.plant-w.d1.temp", JSON.stringify({ ts: base + s * 1_000, value: v }));
    const latest = await new Kvm(nc).open(LATEST_BUCKET);
    const result = await pollUntil(async () => (await latest.get("wg10.plant-w.d1.temp"))?.json<Record<string, unknown>>(), { what: "a wg10 result in agg_latest", timeoutMs: 20_000 });
    expect(result).toMatchObject({ key: "plant-w.d1.temp", start: base, end: base + 10_000, kind: "final", count: 2, avg: 21, max: 22 });
  });

  it("refuses an invalid definition naming the field, and unparsable, oversized or misnamed input", async () => {
    const bad = await refusal(add(service, { definition: "name: wg-bad\nwindow: { kind: tumbling, sizeMs: 10000 }\naggregates: [median]\n" }));
    expect(bad.code).toBe(status.INVALID_ARGUMENT);
    expect(fabricCode(bad)).toBe("FABRIC_ERR_INVALID_INPUT");
    expect(bad.details).toMatch(/window\.aggregates\.0: /);
    const noWindow = await refusal(add(service, { definition: '{"name":"wg-bad","aggregates":["count"]}' }));
    expect(noWindow.details).toMatch(/window\.window: /);
    const garbage = await refusal(add(service, { definition: "name: [unclosed" }));
    expect(garbage.code).toBe(status.INVALID_ARGUMENT);
    expect(garbage.details).toMatch(/not valid JSON or YAML/);
    const huge = await refusal(add(service, { definition: `# ${"x".repeat(MAX_DEFINITION_BYTES)}\n${WG10_YAML}` }));
    expect(huge.code).toBe(status.INVALID_ARGUMENT);
    expect(huge.details).toMatch(/more than 65536/);
    const badName = await refusal(get(service, "WG.>"));
    expect(badName.code).toBe(status.INVALID_ARGUMENT);
    expect(badName.details).toMatch(/^invalid name: name: /);
    expect((await list(service)).map((w) => w.name)).toEqual(["wg10"]);
  });

  it("lets a custom role manage only the windows its permissions would let it write, and a device none", async () => {
    addRole(hub.keystore, "fleet", { name: "window-team", pub: ["$KV.window_defs.wt-own"], sub: ["_INBOX.wt.>"] });
    await pushAccounts(hub.keystore, { servers: hub.urls, accounts: ["fleet"] });
    const team = issueUser(hub.keystore, { account: "fleet", role: "window-team", name: "team-w" }).creds ?? "";
    const own = WG10_YAML.replace("name: wg10", "name: wt-own");
    const mine = await pollUntil(() => add(team, { definition: own }).catch(() => undefined), { what: "the new role at the gateway" });
    expect(mine.name).toBe("wt-own");
    const other = await refusal(add(team, { definition: WG10_YAML.replace("name: wg10", "name: wt-other") }));
    expect(other.code).toBe(status.PERMISSION_DENIED);
    expect(fabricCode(other)).toBe("FABRIC_ERR_PERMISSION_DENIED");
    expect((await list(team)).map((w) => w.name)).toEqual(["wt-own"]);
    expect((await refusal(get(team, "wg10"))).code).toBe(status.PERMISSION_DENIED);
    expect((await refusal(remove(team, "wg10"))).code).toBe(status.PERMISSION_DENIED);
    await remove(team, "wt-own");

    const device = issueUser(hub.keystore, { account: "fleet", role: "device", name: "w-dev", site: "plant-w" }).creds ?? "";
    const denied = await refusal(add(device, { definition: WG10_YAML, replace: true }));
    expect(denied.code).toBe(status.PERMISSION_DENIED);
    expect(fabricCode(denied)).toBe("FABRIC_ERR_PERMISSION_DENIED");
    expect(await list(device)).toEqual([]);
    expect(await get(service, "wg10")).toEqual(added);
  });

  it("removes a definition: get and remove are NOT_FOUND after", async () => {
    await remove(service, "wg10");
    const missing = await refusal(get(service, "wg10"));
    expect(missing.code).toBe(status.NOT_FOUND);
    expect(fabricCode(missing)).toBe("FABRIC_ERR_NOT_FOUND");
    const again = await refusal(remove(service, "wg10"));
    expect(again.code).toBe(status.NOT_FOUND);
    expect(fabricCode(again)).toBe("FABRIC_ERR_NOT_FOUND");
    expect(await list(service)).toEqual([]);
  });
});
