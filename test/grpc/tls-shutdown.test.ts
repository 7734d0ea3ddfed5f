import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { credentials, makeGenericClientConstructor, status, type ChannelCredentials, type Client, type ServiceError } from "@grpc/grpc-js";
import { Kvm } from "@nats-io/kv";
import { service as healthService } from "grpc-health-check";
import { commandKeyOf, fingerprintOf } from "../../fabric/grpc/command-keys.js";
import { CommandServiceClient, CommandServiceService } from "../../proto/gen/fabric/v1/command.js";
import { saveDefinition } from "../../streams/index.js";
import { pollUntil } from "../../fabric/core/index.js";
import { startGateway, type Gateway, type GatewayTls } from "../../fabric/grpc/server.js";
import { tenantServerOptions } from "../../fabric/hub/index.js";
import { issueUser } from "../../identity/index.js";
import { PublishServiceClient, PublishServiceService, type PublishResponse } from "../../proto/gen/fabric/v1/publish.js";
import { QueryServiceClient, QueryServiceService } from "../../proto/gen/fabric/v1/query.js";
import { authFor, connectAs, Harness, startTestHub, testLogger, type TestHub, makeTestCerts } from "../harness/index.js";
import { jetstreamManager } from "@nats-io/jetstream";

const h = new Harness();
let hub: TestHub;
let service: string;
let dir: string;
afterAll(() => h.dispose());
beforeAll(async () => {
  hub = await startTestHub(h, { windows: false });
  service = issueUser(hub.keystore, { account: "fleet", role: "service", name: "tls-backend" }).creds ?? "";
  // a CA, a server certificate for 127.0.0.1 and a client certificate, made for this run
  dir = h.tempDir("fabric-grpc-tls-");
  makeTestCerts(dir);
});

async function gateway(tls?: GatewayTls): Promise<Gateway> {
  const g = await startGateway({
    host: "127.0.0.1",
    port: 0,
    ...(await tenantServerOptions(hub.keystore, hub.dataDir, "fleet", hub.urls, testLogger(), "hub")),
    logger: testLogger(),
    ...(tls === undefined ? {} : { tls }),
  });
  h.defer(() => g.stop());
  return g;
}

const file = (name: string): Buffer => readFileSync(join(dir, name));
const publishOnce = (c: PublishServiceClient): Promise<PublishResponse> =>
  new Promise((resolve, reject) =>
    c.publish({ subject: "telemetry.plant-t.d1.temp", data: Buffer.from("{}"), headers: {}, idempotencyKey: "" }, authFor(service, PublishServiceService.publish.path), { deadline: Date.now() + 5_000 }, (e, r) => (e === null ? resolve(r) : reject(e))),
  );

describe("gRPC gateway: TLS, mTLS and shutdown", () => {
  it("serves over TLS, and with a CA requires a client certificate it signed (mTLS)", async () => {
    const tls = await gateway({ cert: join(dir, "server.pem"), key: join(dir, "server.key") });
    const c = new PublishServiceClient(`127.0.0.1:${tls.port}`, credentials.createSsl(file("ca.pem")));
    expect((await publishOnce(c)).stream).toBe("TELEMETRY");
    c.close();

    const mtls = await gateway({ cert: join(dir, "server.pem"), key: join(dir, "server.key"), ca: join(dir, "ca.pem") });
    const anonymous = new PublishServiceClient(`127.0.0.1:${mtls.port}`, credentials.createSsl(file("ca.pem")));
    const refused = await publishOnce(anonymous).then(
      () => undefined,
      (e: ServiceError) => e,
    );
    expect(refused?.code).toBe(status.UNAVAILABLE);
    anonymous.close();
    const authenticated = new PublishServiceClient(`127.0.0.1:${mtls.port}`, credentials.createSsl(file("ca.pem"), file("client.key"), file("client.pem")));
    expect((await publishOnce(authenticated)).stream).toBe("TELEMETRY");
    authenticated.close();
  });

  it("a graceful stop ends open streams with UNAVAILABLE, then refuses new calls", async () => {
    const g = await gateway();
    const q = new QueryServiceClient(`127.0.0.1:${g.port}`, credentials.createInsecure());
    const nc = await connectAs(hub.urls, service);
    await saveDefinition(nc, { name: "any", window: { kind: "tumbling", sizeMs: 10_000 }, aggregates: ["count"] });
    const watch = q.watchAggregates({ window: "any", key: "" }, authFor(service, QueryServiceService.watchAggregates.path));
    const ended = new Promise<ServiceError>((resolve) => watch.on("error", resolve));
    watch.on("data", () => undefined);
    // the stream is open once its consumer on AGGREGATES exists: stopping then must end it, not wait for it
    const jsm = await jetstreamManager(nc);
    await pollUntil(async () => ((await jsm.streams.info("AGGREGATES")).state.consumer_count > 0 ? true : undefined), { what: "the watch's consumer" });
    await nc.close();
    const t0 = performance.now();
    await g.stop();
    const err = await ended;
    expect(err.code).toBe(status.UNAVAILABLE);
    expect(performance.now() - t0).toBeLessThan(5_000);
    const after = await publishOnce(new PublishServiceClient(`127.0.0.1:${g.port}`, credentials.createInsecure())).then(
      () => undefined,
      (e: ServiceError) => e,
    );
    expect(after?.code).toBe(status.UNAVAILABLE);
    q.close();
  });

  it("while a drain waits for calls in progress, Health.Check answers NOT_SERVING and new calls are UNAVAILABLE with a fabric code", async () => {
    const g = await gateway();
    const nc = await connectAs(hub.urls, service);
    h.defer(() => nc.close());
    // a call that stays in progress: a SendCommand waiting for another send of its idempotency key to finish
    const payload = Buffer.from("1");
    await (await new Kvm(nc).open("cmd_keys")).put(commandKeyOf("plant-t", "d1", "held"), JSON.stringify({ commandId: `plant-t.d1.${Date.now()}-heldheld00`, fingerprint: fingerprintOf("open", payload), startedAt: Date.now() }));
    const cc = new CommandServiceClient(`127.0.0.1:${g.port}`, credentials.createInsecure());
    let heldEndedAt = 0;
    const held = new Promise<ServiceError | null>((resolve) =>
      cc.sendCommand({ site: "plant-t", device: "d1", name: "open", payload, idempotencyKey: "held" }, authFor(service, CommandServiceService.sendCommand.path), { deadline: Date.now() + 2_500 }, (e) => {
        heldEndedAt = performance.now();
        resolve(e);
      }),
    );
    type HealthClient = Client & { check(req: object, cb: (err: ServiceError | null, res: { status: string }) => void): void };
    const hc = new (makeGenericClientConstructor(healthService, "Health") as unknown as new (a: string, c: ChannelCredentials) => HealthClient)(`127.0.0.1:${g.port}`, credentials.createInsecure());
    const check = (): Promise<string> => new Promise((resolve, reject) => hc.check({ service: "" }, (e, r) => (e === null ? resolve(r.status) : reject(e))));
    expect(await check()).toBe("SERVING");
    let stoppedAt = 0;
    const stopped = g.stop().then(() => void (stoppedAt = performance.now()));
    expect(await check()).toBe("NOT_SERVING");
    const refused = await publishOnce(new PublishServiceClient(`127.0.0.1:${g.port}`, credentials.createInsecure())).then(
      () => undefined,
      (e: ServiceError) => e,
    );
    expect([refused?.code, refused?.metadata.get("fabric-error-code")]).toEqual([status.UNAVAILABLE, ["FABRIC_ERR_UNAVAILABLE"]]);
    // the call in progress ends on its own terms (its deadline here: the gateway gives up waiting just before it,
    // or, on a machine too busy for that margin, the client's deadline passes first), then the gateway stops
    expect([status.UNAVAILABLE, status.DEADLINE_EXCEEDED]).toContain((await held)?.code);
    await stopped;
    // the stop waited for it (the client hears the end a moment after the gateway sent it: 100 ms of slack)
    expect(stoppedAt).toBeGreaterThanOrEqual(heldEndedAt - 100);
    hc.close();
    cc.close();
  });
});
