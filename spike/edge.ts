import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Harness, startTestHub, connectAs, testLogger } from "../test/harness/index.js";
import { issueUser, deviceInboxPrefix, connectWithCreds } from "../identity/index.js";
import { pollUntil } from "../fabric/core/index.js";
import { startEdge } from "../edge/index.js";

const h = new Harness();
try {
  const hub = await startTestHub(h, { windows: false });
  const ks = hub.keystore;
  const dir = h.tempDir("edge-");
  const leaf = await ks.withLock(() => issueUser(ks, { account: "fleet", role: "leaf", name: "s1", site: "s1" }));
  writeFileSync(join(dir, "leaf.creds"), leaf.creds!, { mode: 0o600 });
  const t0 = Date.now();
  const edge = await startEdge({ site: "s1", hub: [`nats-leaf://127.0.0.1:${hub.nodes[0]!.ports.leafnode}`], creds: join(dir, "leaf.creds"), dataDir: join(dir, "data"), host: "127.0.0.1", port: 0, monitorPort: 0, buffer: { bytes: 64 * 1024 * 1024, maxAgeMs: 3600_000 } }, testLogger());
  console.log("edge started in", Date.now() - t0, "ms");
  await edge.caughtUp();
  console.log("caught up in", Date.now() - t0, "ms");
  const dev = await ks.withLock(() => issueUser(ks, { account: "fleet", role: "device", name: "d1", site: "s1" }));
  const dnc = await connectWithCreds(dev.creds!, { servers: edge.url, inboxPrefix: deviceInboxPrefix("s1", "d1") });
  const js = jetstream(dnc);
  for (let i = 0; i < 1000; i++) await js.publish("telemetry.s1.d1.temp", JSON.stringify({ value: i, ts: Date.now() }));
  for (let i = 0; i < 10; i++) await js.publish("events.s1.d1.door", JSON.stringify({ i }), { msgID: `e${i}` });
  const svc = issueUser(ks, { account: "fleet", role: "service", name: "svc" });
  const hnc = await connectAs(hub.urls, svc.creds!);
  const hjsm = await jetstreamManager(hnc);
  await pollUntil(async () => ((await hjsm.streams.info("TELEMETRY")).state.messages >= 1000 && (await hjsm.streams.info("EVENTS")).state.messages >= 10 ? true : undefined), { timeoutMs: 15000, what: "sourced" });
  console.log("hub has", (await hjsm.streams.info("TELEMETRY")).state.messages, (await hjsm.streams.info("EVENTS")).state.messages);
  console.log(JSON.stringify(await edge.report(), null, 1));
  await dnc.close(); await hnc.close();
  await edge.stop();
} finally { await h.dispose(); }
