import { afterAll, describe, expect, it } from "vitest";
import { jetstreamManager } from "@nats-io/jetstream";
import { issueUser, type ValidatedUser } from "../../identity/index.js";
import { DurableWills } from "../../ingress/index.js";
import { connectAs, Harness, startTestHub, testLogger } from "../harness/index.js";

/** The durable wills' janitor: it takes over a dead instance's wills without leaving consumers behind. */
const h = new Harness();
afterAll(() => h.dispose());

type Will = Parameters<DurableWills["record"]>[3];

describe("will janitor", () => {
  it("rounds create no consumers on KV_mqtt_wills or KV_mqtt_instances, and still take over a dead instance's will", async () => {
    const hub = await startTestHub(h, { mqtt: true, windows: false, identityService: false });
    const creds = issueUser(hub.keystore, { account: "fleet", role: "ingress", name: "janitor-test" }).creds ?? "";
    const nc = await connectAs(hub.urls, creds);
    h.defer(() => nc.close());
    const jsm = await jetstreamManager(nc);
    const consumers = async (): Promise<number[]> => [(await jsm.streams.info("KV_mqtt_wills")).state.consumer_count, (await jsm.streams.info("KV_mqtt_instances")).state.consumer_count];

    // an instance that records a client's will and then stops (its heartbeat deleted: a marker stays in the stream)
    const dead = await DurableWills.open(nc, "dead-instance", testLogger());
    const will: Will = { topic: "events/plant-a/d1/gone", payload: Buffer.from("bye"), qos: 1, retain: false, properties: undefined, delaySec: 0 };
    await dead.record("client-1", "conn-1", "a-jwt", will);
    await dead.stop();

    const janitor = await DurableWills.open(nc, "janitor-test", testLogger());
    h.defer(() => janitor.stop());
    const published: { topic: string; jwt: string }[] = [];
    const validate = (jwt: string): ValidatedUser => ({ jwt }) as unknown as ValidatedUser;
    const publish = (user: ValidatedUser, w: Will): Promise<void> => {
      published.push({ topic: w.topic, jwt: (user as unknown as { jwt: string }).jwt });
      return Promise.resolve();
    };
    const before = await consumers();
    for (let round = 0; round < 5; round++) await janitor.sweep(publish, validate);
    expect(await consumers()).toEqual(before); // before the fix: +5 on each (kv.keys() made an ordered consumer per round)
    expect(published).toEqual([{ topic: "events/plant-a/d1/gone", jwt: "a-jwt" }]); // taken over once, then deleted
  });
});
