import { writeFileSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { jetstreamManager, jetstream, AckPolicy, DeliverPolicy } from "@nats-io/jetstream";
import { Harness, startTestHub, connectAs } from "../test/harness/index.js";
import { issueUser, SYSTEM_ACCOUNT_NAME } from "../identity/index.js";
import { spawnNatsServer, pollUntil } from "../fabric/core/index.js";

const h = new Harness();
try {
  const hub = await startTestHub(h, { windows: false });
  const ks = hub.keystore;
  const fleet = ks.account("fleet");
  const sys = ks.account(SYSTEM_ACCOUNT_NAME);
  const dir = h.tempDir("edge-");
  const leaf = issueUser(ks, { account: "fleet", role: "leaf", name: "s1", site: "s1" });
  writeFileSync(join(dir, "leaf.creds"), leaf.creds!, { mode: 0o600 });
  const svc = issueUser(ks, { account: "fleet", role: "service", name: "svc" });
  const cfg = {
    server_name: "edge-s1", trace: true, debug: true, host: "127.0.0.1", port: -1, http_port: -1, ports_file_dir: dir,
    operator: ks.operatorJwt(), system_account: sys.publicKey,
    resolver: { type: "full", dir: join(dir, "jwt"), allow_delete: false, interval: "2m" },
    resolver_preload: { [sys.publicKey]: ks.accountJwt(SYSTEM_ACCOUNT_NAME), [fleet.publicKey]: ks.accountJwt("fleet") },
    jetstream: { store_dir: join(dir, "js"), domain: "s1" },
    leafnodes: { reconnect: "1s", remotes: [{ urls: [`nats-leaf://127.0.0.1:${hub.nodes[0]!.ports.leafnode}`], credentials: join(dir, "leaf.creds"), account: fleet.publicKey }] },
  };
  writeFileSync(join(dir, "edge.conf"), JSON.stringify(cfg, null, 2));
  const edge = await spawnNatsServer({ configFile: join(dir, "edge.conf"), portsDir: dir, logFile: join(dir, "edge.log") });
  const enc = await connectAs([edge.url], svc.creds!);
  const ejsm = await jetstreamManager(enc);
  await ejsm.streams.add({ name: "EDGE_TELEMETRY", subjects: ["telemetry.s1.>"] });
  await ejsm.consumers.add("EDGE_TELEMETRY", { durable_name: "hub-s1", ack_policy: "flow_control" as AckPolicy, deliver_subject: "$FABRIC.src.s1.telemetry", flow_control: true, idle_heartbeat: 1_000_000_000, max_deliver: -1, deliver_policy: DeliverPolicy.All });
  const ejs = jetstream(enc);
  for (let i = 0; i < 20000; i++) void ejs.publish(`telemetry.s1.d${i % 3}.temp`, JSON.stringify({ value: i, ts: Date.now() }));
  const hnc = await connectAs(hub.urls, svc.creds!);
  const hjsm = await jetstreamManager(hnc);
  const si = await hjsm.streams.info("TELEMETRY");
  const sources = [{ name: "EDGE_TELEMETRY", external: { api: "$JS.s1.API", deliver: "" }, consumer: { name: "hub-s1", deliver_subject: "$FABRIC.src.s1.telemetry" } }];
  try {
    const r = await hnc.request("$JS.API.STREAM.UPDATE.TELEMETRY", JSON.stringify({ ...si.config, sources }));
    console.log("update:", JSON.stringify(JSON.parse(r.string()).config?.sources ?? JSON.parse(r.string())));
  } catch (e) { console.log("update failed", e); }
  try {
    await pollUntil(async () => ((await hjsm.streams.info("TELEMETRY")).state.messages >= 20000 ? true : undefined), { timeoutMs: 6000, what: "sourced" });
    await new Promise((r) => setTimeout(r, 2500));
    const ci = await ejsm.consumers.info("EDGE_TELEMETRY", "hub-s1");
    console.log("edge consumer", JSON.stringify({ ackFloor: ci.ack_floor, delivered: ci.delivered, ackPending: ci.num_ack_pending, pending: ci.num_pending }));
    console.log("SOURCED OK", (await hjsm.streams.info("TELEMETRY")).state.messages);
  } catch (e) { console.log("not sourced", String(e)); console.log(JSON.stringify((await hjsm.streams.info("TELEMETRY")).sources, null, 1)); }
  const subjectsToTry = ["_INBOX.s1.x", "telemetry.s1.a", "telemetry.s2.a", "events.s1.a", "$FABRIC.src.s1.t", "$FABRIC.src.s2.t", "cmd.s1.a", "cmd.s2.a", "foo", "_INBOX.x", "$FABRIC.edge.s1.x", "$FABRIC.id.nonce", "$JS.s1.API.INFO", "$JS.ACK.x", "$JS.FC.x"];
  const probe = async (from: typeof enc, to: typeof enc, label: string): Promise<void> => {
    const got: string[] = [];
    const subs = subjectsToTry.map((s) => to.subscribe(s, { callback: (_e, m) => got.push(m.subject) }));
    await to.flush();
    await new Promise((r) => setTimeout(r, 300));
    for (const s of subjectsToTry) from.publish(s, "x");
    await from.flush();
    await new Promise((r) => setTimeout(r, 500));
    console.log(label, "delivered:", got.join(" "));
    for (const s of subs) s.unsubscribe();
  };
  await probe(enc, hnc, "edge->hub");
  await probe(hnc, enc, "hub->edge");
  console.log("--- hub log"); console.log(readFileSync(hub.nodes[0]!.logFile, "utf8").split("\n").filter((l) => /iolation|rror|eaf/.test(l)).slice(-20).join("\n"));
  console.log("--- edge log"); writeFileSync("/tmp/edge-spike.log", readFileSync(join(dir, "edge.log")));
  await enc.close(); await hnc.close(); await edge.stop();
} finally { await h.dispose(); }
