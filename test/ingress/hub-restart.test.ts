import { afterAll, beforeAll, describe, expect, it } from "vitest";
import mqtt from "mqtt";
import { jetstream } from "@nats-io/jetstream";
import { pollUntil } from "../../fabric/core/index.js";
import { issueUser } from "../../identity/index.js";
import { connectAs, Harness, startTestHub, type TestHub } from "../harness/index.js";

const h = new Harness();
let hub: TestHub;
afterAll(() => h.dispose());
beforeAll(async () => {
  hub = await startTestHub(h, { mqtt: true });
});

async function storedValues(subject: string): Promise<number[]> {
  const svc = issueUser(hub.keystore, { account: "fleet", role: "service", name: "restart-reader" });
  const nc = await connectAs(hub.urls, svc.creds ?? "");
  try {
    const c = await jetstream(nc).consumers.get("TELEMETRY", { filter_subjects: [subject] });
    const values: number[] = [];
    let left = (await c.info(true)).num_pending;
    while (left > 0) {
      for await (const m of await c.fetch({ max_messages: Math.min(left, 1_000), expires: 2_000 })) {
        values.push(m.json<{ value: number }>().value);
        left--;
      }
    }
    return values;
  } finally {
    await nc.close();
  }
}

describe("the hub's nats-server killed under the ingress", () => {
  it("no acknowledged message is lost; the ingress reconnects and the client goes on", async () => {
    const device = "restart-1";
    const r = issueUser(hub.keystore, { account: "fleet", role: "mqtt", name: device, site: "plant-a" });
    const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${hub.mqtt?.tcp ?? 0}`, { clientId: device, clean: false, username: device, password: r.jwt, reconnectPeriod: 100 });
    h.defer(() => client.endAsync(true));
    client.on("error", () => undefined);
    const acked = new Set<number>();
    let i = 0;
    let stop = false;
    const loop = (async () => {
      while (!stop) {
        const v = i++;
        await client.publishAsync(`telemetry/plant-a/${device}/seq`, JSON.stringify({ value: v, ts: Date.now() }), { qos: 1 }).then(
          () => acked.add(v),
          () => undefined,
        );
      }
    })();
    await pollUntil(() => acked.size >= 200, { what: "200 acknowledged before the kill" });
    const [pid] = hub.serverPids();
    process.kill(pid ?? 0, "SIGKILL");
    await pollUntil(() => hub.serverPids()[0] !== pid, { what: "the supervisor to restart nats-server" });
    const before = acked.size;
    await pollUntil(() => acked.size >= before + 200, { what: "200 more acknowledged after the restart", timeoutMs: 30_000 });
    stop = true;
    await loop;
    const stored = new Set(await storedValues(`telemetry.plant-a.${device}.seq`));
    const lost = [...acked].filter((v) => !stored.has(v));
    expect(lost).toEqual([]);
  });
});
