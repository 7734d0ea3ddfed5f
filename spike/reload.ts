import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { Harness, startTestHub, connectAs } from "../test/harness/index.js";
import { issueUser, revokeUsers, SYSTEM_ACCOUNT_NAME } from "../identity/index.js";
import { spawnNatsServer } from "../fabric/core/index.js";

const h = new Harness();
try {
  const hub = await startTestHub(h, { windows: false, identityService: false });
  const ks = hub.keystore;
  const fleet = ks.account("fleet");
  const sys = ks.account(SYSTEM_ACCOUNT_NAME);
  const dir = h.tempDir("edge-");
  const dev = issueUser(ks, { account: "fleet", role: "device", name: "d1", site: "s1" });
  const cfg = (preload: Record<string, string>) => ({
    server_name: "edge-s1", host: "127.0.0.1", port: -1, ports_file_dir: dir,
    operator: ks.operatorJwt(), system_account: sys.publicKey,
    resolver: { type: "full", dir: join(dir, "jwt"), allow_delete: false, interval: "2m" },
    resolver_preload: preload,
  });
  const path = join(dir, "edge.conf");
  writeFileSync(path, JSON.stringify(cfg({ [sys.publicKey]: ks.accountJwt(SYSTEM_ACCOUNT_NAME), [fleet.publicKey]: ks.accountJwt("fleet") })));
  const edge = await spawnNatsServer({ configFile: path, portsDir: dir, logFile: join(dir, "edge.log") });
  const nc = await connectAs([edge.url], dev.creds!);
  let closed = false;
  void nc.closed().then(() => (closed = true));
  revokeUsers(ks, "fleet", dev.record.publicKey);
  writeFileSync(path, JSON.stringify(cfg({ [sys.publicKey]: ks.accountJwt(SYSTEM_ACCOUNT_NAME), [fleet.publicKey]: ks.accountJwt("fleet") })));
  const t0 = Date.now();
  process.kill(edge.pid, "SIGHUP");
  await new Promise((r) => setTimeout(r, 1000));
  console.log("existing connection closed after reload:", closed, Date.now() - t0);
  try { const n2 = await connectAs([edge.url], dev.creds!); console.log("NEW CONNECTION ACCEPTED (bad)"); await n2.close(); } catch (e) { console.log("new connection refused:", String(e).slice(0, 100)); }
  console.log((await import("node:fs")).readFileSync(join(dir, "edge.log"), "utf8").split("\n").slice(-8).join("\n"));
  await edge.stop();
} finally { await h.dispose(); }
