import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jetstreamManager } from "@nats-io/jetstream";
import { pollUntil } from "../../fabric/core/index.js";
import { issueUser } from "../../identity/index.js";
import { connectAs, Harness, spawnMosquitto, startTestHub, type TestHub } from "../harness/index.js";

const h = new Harness();
let hub: TestHub;
let port: string;
afterAll(() => h.dispose());
beforeAll(async () => {
  hub = await startTestHub(h, { mqtt: true });
  port = String(hub.mqtt?.tcp ?? 0);
});

async function stored(subject: string): Promise<number> {
  const svc = issueUser(hub.keystore, { account: "fleet", role: "service", name: "count" });
  const nc = await connectAs(hub.urls, svc.creds ?? "");
  try {
    const info = await (await jetstreamManager(nc)).streams.info("TELEMETRY", { subjects_filter: subject });
    return info.state.subjects?.[subject] ?? 0;
  } finally {
    await nc.close();
  }
}

describe("legacy devices with mosquitto_pub and mosquitto_sub", () => {
  for (const [version, flag] of [
    ["3.1", "mqttv31"],
    ["3.1.1", "mqttv311"],
    ["5.0", "mqttv5"],
  ] as const) {
    it(`MQTT ${version}: a QoS 1 publish is stored, a subscriber gets its commands`, async () => {
      const name = `mosq-${flag}`;
      const jwt = issueUser(hub.keystore, { account: "fleet", role: "mqtt", name, site: "plant-a" }).jwt;
      const auth = ["-h", "127.0.0.1", "-p", port, "-V", flag, "-u", name, "-P", jwt];
      const pub = spawnMosquitto("mosquitto_pub", [...auth, "-i", `${name}-pub`, "-q", "1", "-t", `telemetry/plant-a/${name}/temp`, "-m", JSON.stringify({ value: 21.5, ts: Date.now() })]);
      expect(await pub.exited).toBe(0);
      expect(await stored(`telemetry.plant-a.${name}.temp`)).toBe(1);

      const sub = spawnMosquitto("mosquitto_sub", [...auth, "-i", `${name}-sub`, "-q", "1", "-t", `cmd/plant-a/${name}/#`, "-C", "1", "-v"]);
      h.defer(() => {
        sub.child.kill("SIGKILL");
      });
      const svc = issueUser(hub.keystore, { account: "fleet", role: "service", name: "cmd" });
      const nc = await connectAs(hub.urls, svc.creds ?? "");
      // publish until the subscriber (which needs a moment to subscribe) prints the command and exits
      await pollUntil(
        async () => {
          nc.publish(`cmd.plant-a.${name}.reboot`, "now");
          await nc.flush();
          return sub.stdout().includes(`cmd/plant-a/${name}/reboot now`);
        },
        { intervalMs: 100, what: "mosquitto_sub to print the command" },
      );
      expect(await sub.exited).toBe(0);
      await nc.close();
    });
  }

  it("a wrong password is refused: mosquitto_pub fails", async () => {
    const pub = spawnMosquitto("mosquitto_pub", ["-h", "127.0.0.1", "-p", port, "-u", "nobody", "-P", "nope", "-t", "telemetry/x/y/z", "-m", "1"]);
    expect(await pub.exited).not.toBe(0);
    expect(pub.stderr()).toMatch(/not authori[sz]ed|bad user name or password|refused/i);
  });
});
