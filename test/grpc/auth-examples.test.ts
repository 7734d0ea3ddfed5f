import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomUUID } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { projectRoot } from "../../fabric/core/index.js";
import { REPLAY_WINDOW_MS, signedPayload } from "../../fabric/grpc/auth.js";
import { startGateway } from "../../fabric/grpc/server.js";
import { tenantServerOptions } from "../../fabric/hub/index.js";
import { createKeyPair, formatCreds, issueUser, keyPairFromSeed, parseCreds, verifyProof } from "../../identity/index.js";
import { buildGoPublish, examplePython, runExample, type ExampleRun, type PythonToolchain } from "../harness/examples.js";
import { connectAs, Harness, makeTestCerts, startTestHub, testLogger, type TestCerts, type TestHub } from "../harness/index.js";

// The gRPC authentication examples for other languages (examples/python, examples/go) against the real
// gateway: plaintext (the hub's gateway) and TLS (a second gateway with a test CA).
const PUBLISH = "/fabric.v1.PublishService/Publish";
const PY_DIR = join(projectRoot(), "examples", "python");

const h = new Harness();
let hub: TestHub;
let plainAddr: string;
let tlsAddr: string;
let certs: TestCerts;
let creds: string;
let credsFile: string;
let tamperedFile: string;
let python: PythonToolchain;
let goPublish: string;
let nc: NatsConnection;
let jsm: JetStreamManager;

afterAll(() => h.dispose());
beforeAll(async () => {
  const dir = h.tempDir("fabric-auth-examples-");
  // built before the hub starts: the build runs synchronously
  goPublish = await buildGoPublish(dir);
  python = await examplePython();
  hub = await startTestHub(h, { grpc: true, windows: false });
  plainAddr = `127.0.0.1:${hub.grpc ?? 0}`;
  certs = makeTestCerts(h.tempDir("fabric-auth-examples-tls-"));
  const tls = await startGateway({
    host: "127.0.0.1",
    port: 0,
    ...(await tenantServerOptions(hub.keystore, hub.dataDir, "fleet", hub.urls, testLogger(), "hub")),
    logger: testLogger(),
    tls: { cert: certs.server.cert, key: certs.server.key },
  });
  h.defer(() => tls.stop());
  tlsAddr = `127.0.0.1:${tls.port}`;
  creds = issueUser(hub.keystore, { account: "fleet", role: "service", name: "polyglot" }).creds ?? "";
  credsFile = join(dir, "polyglot.creds");
  writeFileSync(credsFile, creds, { mode: 0o600 });
  // the same JWT with another key's seed: well-formed, but its signatures do not verify
  tamperedFile = join(dir, "tampered.creds");
  writeFileSync(tamperedFile, formatCreds(parseCreds(creds).jwt, createKeyPair("user").seed), { mode: 0o600 });
  nc = await connectAs(hub.urls, creds);
  h.defer(() => nc.close());
  jsm = await jetstreamManager(nc);
});

interface Reply {
  stream: string;
  sequence: number;
  duplicate: boolean;
}

const replies = (run: ExampleRun): Reply[] => {
  expect(run.stderr).toBe("");
  expect(run.code).toBe(0);
  return run.stdout.trim().split("\n").map((l) => JSON.parse(l) as Reply);
};

const runPython = (args: string[]): Promise<ExampleRun> => runExample(python.bin, [join(PY_DIR, "publish.py"), ...args], python.env);

/** The message at `seq` in TELEMETRY, read back over NATS. */
async function stored(seq: number): Promise<{ subject: string; data: string; msgId: string | undefined }> {
  const m = await jsm.streams.getMessage("TELEMETRY", { seq });
  expect(m).not.toBeNull();
  return { subject: m?.subject ?? "", data: m?.string() ?? "", msgId: m?.header.get("Nats-Msg-Id") };
}

describe("gRPC authentication examples (Python, Go)", () => {
  it("the Python plugin signs `<method path>\\n<ts>\\n<nonce>` with the creds' key, unpadded base64url, fresh for each call", async () => {
    const script = [
      "import json, sys",
      `sys.path.insert(0, ${JSON.stringify(PY_DIR)})`,
      "from fabric_auth import FabricAuth, method_path",
      "auth = FabricAuth.from_file(sys.argv[1])",
      "class Ctx: pass",
      "plain, tls = Ctx(), Ctx()",
      "plain.service_url, plain.method_name = '://127.0.0.1:50051/fabric.v1.PublishService', 'Publish'",
      "tls.service_url, tls.method_name = 'https://gw.example:443/fabric.v1.PublishService', 'Publish'",
      "print(json.dumps({'paths': [method_path(plain), method_path(tls)], 'md': [dict(auth.metadata(method_path(plain))) for _ in range(2)]}))",
    ].join("\n");
    const run = await runExample(python.bin, ["-c", script, credsFile], python.env);
    expect(run.stderr).toBe("");
    const out = JSON.parse(run.stdout) as { paths: string[]; md: Record<string, string>[] };
    expect(out.paths).toEqual([PUBLISH, PUBLISH]);
    const { jwt, seed } = parseCreds(creds);
    const publicKey = keyPairFromSeed(seed).publicKey;
    for (const md of out.md) {
      expect(Object.keys(md).sort()).toEqual(["fabric-jwt", "fabric-nonce", "fabric-sig", "fabric-ts"]);
      const { "fabric-jwt": j = "", "fabric-ts": ts = "", "fabric-nonce": nonce = "", "fabric-sig": sig = "" } = md;
      expect(j).toBe(jwt);
      expect(ts).toMatch(/^\d+$/);
      expect(Math.abs(Number(ts) - Date.now())).toBeLessThan(REPLAY_WINDOW_MS);
      expect(nonce.length).toBeGreaterThanOrEqual(16);
      expect(nonce.length).toBeLessThanOrEqual(128);
      expect(sig).toMatch(/^[A-Za-z0-9_-]{86}$/); // 64 bytes, base64url without padding
      expect(verifyProof(publicKey, signedPayload(PUBLISH, ts, nonce), sig)).toBe(true);
      expect(verifyProof(publicKey, signedPayload("fabric.v1.PublishService/Publish", ts, nonce), sig)).toBe(false);
    }
    expect(out.md[0]?.["fabric-nonce"]).not.toBe(out.md[1]?.["fabric-nonce"]);
  });

  for (const lang of ["python", "go"] as const) {
    const publish = (args: string[]): Promise<ExampleRun> =>
      lang === "python" ? runPython(args) : runExample(goPublish, args);

    it(`${lang}: publishes over plaintext and over TLS; stored in TELEMETRY and read back over NATS; each call on a channel is signed afresh`, async () => {
      const body = `${lang}-${randomUUID()}`;
      const subject = `telemetry.plant-x.${lang}-1.temp`;
      // two calls on one channel: the second would be refused as a replay if metadata were reused
      const [first, second] = replies(await publishWith(plainAddr, ["--subject", subject, "--data", body, "--count", "2"]));
      expect(first).toMatchObject({ stream: "TELEMETRY", duplicate: false });
      expect(second).toMatchObject({ stream: "TELEMETRY", duplicate: false });
      expect(first?.sequence).toBeGreaterThan(0);
      expect(second?.sequence).toBeGreaterThan(first?.sequence ?? 0);
      expect(await stored(first?.sequence ?? 0)).toMatchObject({ subject, data: body });

      const key = `reading-${randomUUID()}`;
      const [tls] = replies(await publishWith(tlsAddr, ["--ca", certs.ca, "--subject", subject, "--data", `${body}-tls`, "--key", key]));
      expect(tls).toMatchObject({ stream: "TELEMETRY", duplicate: false });
      expect(await stored(tls?.sequence ?? 0)).toEqual({ subject, data: `${body}-tls`, msgId: key });
      const [again] = replies(await publishWith(plainAddr, ["--subject", subject, "--data", `${body}-tls`, "--key", key]));
      expect(again).toEqual({ stream: "TELEMETRY", sequence: tls?.sequence, duplicate: true });
    });

    it(`${lang}: a creds file with the wrong seed is refused with UNAUTHENTICATED and nothing is stored`, async () => {
      const before = (await jsm.streams.info("TELEMETRY")).state.last_seq;
      for (const [addr, extra] of [[plainAddr, []], [tlsAddr, ["--ca", certs.ca]]] as const) {
        const run = await publishWith(addr, [...extra, "--subject", `telemetry.plant-x.${lang}-1.temp`], tamperedFile);
        expect(run.code).toBe(1);
        expect(run.stdout).toBe("");
        expect(run.stderr).toMatch(/^grpc error code=16 \((UNAUTHENTICATED|Unauthenticated)\): .*does not verify/);
      }
      expect((await jsm.streams.info("TELEMETRY")).state.last_seq).toBe(before);
    });

    function publishWith(addr: string, args: string[], file = credsFile): Promise<ExampleRun> {
      return publish(["--addr", addr, "--creds", file, ...args]);
    }
  }
});
