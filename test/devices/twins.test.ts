/**
 * Device twins (issue 15): desired set by an operator reaches the device as a delta on its command topics (also
 * when it comes back), the device's reports are accepted or rejected there, versions guard concurrent
 * changes, and an oversized twin is refused with the reason (REJECTED keeps the report).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jetstreamManager } from "@nats-io/jetstream";
import { pollUntil } from "../../fabric/core/index.js";
import { issueUser } from "../../identity/index.js";
import { connectAs, Harness, runCli, startTestHub, type TestHub } from "../harness/index.js";
import { connectMqtt, Inbox, mqttUrl, versionOptions } from "../ingress/mqtt-helpers.js";

const h = new Harness();
let hub: TestHub;
let cli: string[];

afterAll(() => h.dispose());
beforeAll(async () => {
  hub = await startTestHub(h, { mqtt: true, windows: false, sinks: false });
  cli = ["--store", hub.keystoreDir, "--data", hub.dataDir, "--server", hub.urls[0] ?? ""];
}, 60_000);

const last = async (inbox: Inbox, pred: (m: { topic: string; payload: string }) => boolean): Promise<{ topic: string; payload: string }> => {
  const got = await inbox.waitFor(pred);
  const m = got[got.length - 1];
  if (m === undefined) throw new Error("no message");
  return m;
};

const twinCli = (args: string[]) => runCli("fabric", ["devices", "twin", "thermo-1", "--site", "home", ...args, ...cli]);

describe("device twins", () => {
  it("desired → delta to the device; its report → accepted, no delta left; versions refuse a stale change; a persistent session gets the delta when back", async () => {
    const dev = issueUser(hub.keystore, { account: "fleet", role: "mqtt", name: "thermo-1", site: "home" });
    const opts = { ...versionOptions(5), clientId: "thermo-1", username: "thermo-1", password: dev.jwt, clean: false, properties: { sessionExpiryInterval: 600 } };
    let { client } = await connectMqtt(h, mqttUrl(hub), opts);
    let inbox = new Inbox(client);
    await client.subscribeAsync("cmd/home/thermo-1/twin/#", { qos: 1 });

    const set = await twinCli(["--desired", '{"mode":"eco","setpoint":21}', "--json"]);
    expect(set.code, set.stderr).toBe(0);
    expect(JSON.parse(set.stdout)).toMatchObject({ version: 1, delta: { mode: "eco", setpoint: 21 } });
    const delta = await last(inbox, (m) => m.topic === "cmd/home/thermo-1/twin/delta");
    expect(JSON.parse(delta.payload)).toEqual({ state: { mode: "eco", setpoint: 21 }, version: 1 });

    await client.publishAsync("events/home/thermo-1/twin-report", JSON.stringify({ state: { reported: { mode: "eco", setpoint: 21, battery: 88 } } }), { qos: 1 });
    const accepted = await last(inbox, (m) => m.topic === "cmd/home/thermo-1/twin/accepted");
    expect(JSON.parse(accepted.payload)).toMatchObject({ version: 2 });
    const shown = JSON.parse((await twinCli(["--json"])).stdout) as { version: number; delta: object; reported: object };
    expect(shown).toMatchObject({ version: 2, delta: {}, reported: { mode: "eco", setpoint: 21, battery: 88 } });

    // a change at a version the twin has left
    const stale = await twinCli(["--desired", '{"mode":"comfort"}', "--expected-version", "1"]);
    expect(stale.code).not.toBe(0);
    expect(stale.stderr).toMatch(/FABRIC_ERR_TWIN_VERSION_CONFLICT|is at version 2, not 1/);

    // away: desired changes meanwhile; back with its session, the delta is there
    await client.endAsync();
    expect((await twinCli(["--desired", '{"mode":"comfort","setpoint":null}', "--expected-version", "2"])).code).toBe(0);
    ({ client } = await connectMqtt(h, mqttUrl(hub), opts));
    inbox = new Inbox(client);
    const back = await last(inbox, (m) => m.topic === "cmd/home/thermo-1/twin/delta" && (JSON.parse(m.payload) as { state: { mode?: string } }).state.mode === "comfort");
    expect(JSON.parse(back.payload)).toEqual({ state: { mode: "comfort" }, version: 3 });
    await client.endAsync();
  });

  it("a malformed or oversized report is rejected with the reason, kept in REJECTED; the twin is unchanged", async () => {
    const dev = issueUser(hub.keystore, { account: "fleet", role: "mqtt", name: "big-1", site: "home" });
    const { client } = await connectMqtt(h, mqttUrl(hub), { ...versionOptions(5), clientId: "big-1", username: "big-1", password: dev.jwt });
    const inbox = new Inbox(client);
    await client.subscribeAsync("cmd/home/big-1/twin/#", { qos: 1 });
    await client.publishAsync("events/home/big-1/twin-report", JSON.stringify({ state: { reported: { blob: "x".repeat(9_000) } } }), { qos: 1 });
    const tooBig = await last(inbox, (m) => m.topic === "cmd/home/big-1/twin/rejected");
    expect(JSON.parse(tooBig.payload)).toMatchObject({ code: "FABRIC_ERR_TWIN_TOO_LARGE", message: expect.stringMatching(/at most 8192/) as unknown });
    await client.publishAsync("events/home/big-1/twin-report", JSON.stringify({ reported: { a: 1 } }), { qos: 1 });
    const bad = await last(inbox, (m) => m.topic === "cmd/home/big-1/twin/rejected" && m.payload.includes("TWIN_INVALID"));
    expect(JSON.parse(bad.payload)).toMatchObject({ code: "FABRIC_ERR_TWIN_INVALID" });
    const reader = await connectAs(hub.urls, issueUser(hub.keystore, { account: "fleet", role: "service", name: "twin-reader" }).creds ?? "");
    h.defer(() => reader.close());
    const jsm = await jetstreamManager(reader);
    const info = await pollUntil(async () => {
      const i = await jsm.streams.info("REJECTED", { subjects_filter: "rejected.events.home.big-1.twin-report" });
      return (i.state.subjects?.["rejected.events.home.big-1.twin-report"] ?? 0) >= 2 ? i : undefined;
    }, { timeoutMs: 10_000 });
    expect(info.state.subjects?.["rejected.events.home.big-1.twin-report"]).toBe(2);
    const m = await jsm.streams.getMessage("REJECTED", { last_by_subj: "rejected.events.home.big-1.twin-report" });
    expect(m?.header.get("Fabric-Reject-Reason")).toMatch(/FABRIC_ERR_TWIN_INVALID/);
    expect(JSON.parse((await runCli("fabric", ["devices", "twin", "big-1", "--site", "home", "--json", ...cli])).stdout)).toMatchObject({ version: 0, reported: {} });
    await client.endAsync();
  });
});
