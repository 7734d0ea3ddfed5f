import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { makeGenericClientConstructor, Metadata, status, type ChannelCredentials, type Client, type ServiceError } from "@grpc/grpc-js";
import { jetstreamManager } from "@nats-io/jetstream";
import { headers as natsHeaders, type NatsConnection } from "@nats-io/transport-node";
import { service as healthService } from "grpc-health-check";
import { pollUntil, projectRoot } from "../../fabric/core/index.js";
import { COMMAND_ACK_TYPE, COMMAND_ID_HEADER } from "../../fabric/grpc/command-service.js";
import { addRole, createKeyPair, issueBootstrap, issueUser, pushAccounts, revokeUsers } from "../../identity/index.js";
import { CommandServiceClient, CommandServiceService, CommandState, type WatchCommandResponse } from "../../proto/gen/fabric/v1/command.js";
import { CredentialServiceClient, NonceOperation } from "../../proto/gen/fabric/v1/credential.js";
import { PublishServiceClient, PublishServiceService, type PublishRequest, type PublishResponse } from "../../proto/gen/fabric/v1/publish.js";
import { QueryServiceClient, QueryServiceService, type WatchAggregatesResponse } from "../../proto/gen/fabric/v1/query.js";
import { saveDefinition } from "../../streams/index.js";
import { authFor, connectAs, grpcTestbed, Harness, type GrpcTestbed, type TestHub } from "../harness/index.js";

const h = new Harness();
let hub: TestHub;
let port: number;
let service: string;
let nc: NatsConnection;
let client: GrpcTestbed["client"];
afterAll(() => h.dispose());
beforeAll(async () => {
  ({ hub, service, nc, client } = await grpcTestbed(h, "backend"));
  port = hub.grpc ?? 0;
});

function publish(c: PublishServiceClient, req: Partial<PublishRequest>, md: Metadata): Promise<PublishResponse> {
  return new Promise((resolve, reject) => c.publish({ subject: "", data: Buffer.alloc(0), headers: {}, idempotencyKey: "", ...req }, md, (err, res) => (err === null ? resolve(res) : reject(err))));
}

const refusal = (p: Promise<unknown>): Promise<ServiceError> => p.then(() => Promise.reject(new Error("expected a refusal")), (err: ServiceError) => err);
const PUBLISH = PublishServiceService.publish.path;

describe("gRPC gateway", () => {
  it("serves health and reflection (buf curl lists the fabric.v1 methods)", async () => {
    type HealthClient = Client & { check(req: object, cb: (err: ServiceError | null, res: { status: string }) => void): void };
    const hc = client(makeGenericClientConstructor(healthService, "Health") as unknown as new (a: string, c: ChannelCredentials) => HealthClient);
    const res = await new Promise<{ status: string }>((resolve, reject) => hc.check({ service: "fabric.v1.PublishService" }, (err, r) => (err === null ? resolve(r) : reject(err))));
    expect(res.status).toBe("SERVING");
    const { stdout } = await promisify(execFile)(`${projectRoot()}/node_modules/.bin/buf`, ["curl", "--protocol", "grpc", "--http2-prior-knowledge", "--list-methods", `http://127.0.0.1:${port}`]);
    expect(stdout).toContain("fabric.v1.PublishService/Publish");
    expect(stdout).toContain("fabric.v1.ConsumerService/Consume");
    expect(stdout).toContain("grpc.health.v1.Health/Check");
  });

  it("publishes with an idempotency key: stored once, the reply means stored", async () => {
    const c = client(PublishServiceClient);
    const req = { subject: "telemetry.plant-a.pump-1.temp", data: Buffer.from('{"value":1,"ts":1}'), idempotencyKey: "reading-1" };
    const first = await publish(c, req, authFor(service, PUBLISH));
    expect(first).toMatchObject({ stream: "TELEMETRY", duplicate: false });
    const again = await publish(c, req, authFor(service, PUBLISH));
    expect(again).toMatchObject({ stream: "TELEMETRY", sequence: first.sequence, duplicate: true });
    const m = await (await jetstreamManager(nc)).streams.getMessage("TELEMETRY", { seq: first.sequence });
    expect(m?.subject).toBe("telemetry.plant-a.pump-1.temp");
    const bad = await refusal(publish(c, { subject: "telemetry.>" }, authFor(service, PUBLISH)));
    expect(bad.code).toBe(status.INVALID_ARGUMENT);
  });

  it("refuses a bad signature, another method's signature, an expired credential, a replay, and subjects outside the role", async () => {
    const c = client(PublishServiceClient);
    const req = { subject: "telemetry.plant-a.pump-1.temp", data: Buffer.from("{}") };
    const tampered = authFor(service, PUBLISH);
    tampered.set("fabric-sig", Buffer.alloc(64, 1).toString("base64url"));
    expect((await refusal(publish(c, req, tampered))).code).toBe(status.UNAUTHENTICATED);
    const other = await refusal(publish(c, req, authFor(service, QueryServiceService.getLatest.path)));
    expect(other.code).toBe(status.UNAUTHENTICATED);
    expect(other.details).toMatch(/does not verify/);
    const stale = await refusal(publish(c, req, authFor(service, PUBLISH, Date.now() - 120_000)));
    expect(stale.details).toMatch(/not within 30 s/);
    const md = authFor(service, PUBLISH);
    await publish(c, req, md);
    const replay = await refusal(publish(c, req, md));
    expect(replay.code).toBe(status.UNAUTHENTICATED);
    expect(replay.details).toMatch(/replayed/);
    const none = await refusal(publish(c, req, new Metadata()));
    expect(none.details).toMatch(/missing fabric-jwt/);

    const short = issueUser(hub.keystore, { account: "fleet", role: "service", name: "short-lived", expiresInSec: 1 }).creds ?? "";
    const exp = (JSON.parse(Buffer.from((short.split("\n")[1] ?? "").split(".")[1] ?? "", "base64url").toString()) as { exp: number }).exp;
    await pollUntil(() => Date.now() > exp * 1000 + 100, { what: "the credential to expire" });
    const expired = await refusal(publish(c, req, authFor(short, PUBLISH)));
    expect(expired.code).toBe(status.UNAUTHENTICATED);
    expect(expired.details).toMatch(/expired/);

    addRole(hub.keystore, "fleet", { name: "plant-a-reader", pub: ["telemetry.plant-a.>"], sub: ["agg.*.plant-a.>"] });
    await pushAccounts(hub.keystore, { servers: hub.urls, accounts: ["fleet"] });
    const narrow = issueUser(hub.keystore, { account: "fleet", role: "plant-a-reader", name: "reader" }).creds ?? "";
    await pollUntil(async () => (await publish(c, req, authFor(narrow, PUBLISH)).then(() => true, () => false)) || undefined, { what: "the new role at the gateway" });
    const denied = await refusal(publish(c, { subject: "telemetry.plant-b.pump-1.temp", data: Buffer.from("{}") }, authFor(narrow, PUBLISH)));
    expect(denied.code).toBe(status.PERMISSION_DENIED);
    expect(denied.metadata.get("fabric-error-code")).toEqual(["FABRIC_ERR_PERMISSION_DENIED"]);
  });

  it("queries window aggregates (latest, range) and watches them as windows close; a revoked caller's watch ends UNAUTHENTICATED", async () => {
    const base = Math.ceil(Date.now() / 10_000) * 10_000 - 1_000_000_000;
    await saveDefinition(nc, { name: "q10", source: { filter: "telemetry.plant-q.>" }, window: { kind: "tumbling", sizeMs: 10_000 }, aggregates: ["count", "avg", "max"], outOfOrderMs: 0 });
    const q = client(QueryServiceClient);
    const watcher = issueUser(hub.keystore, { account: "fleet", role: "service", name: "watcher-q" });
    const seen: WatchAggregatesResponse[] = [];
    const watch = q.watchAggregates({ window: "q10", key: "plant-q.*.temp" }, authFor(watcher.creds ?? "", QueryServiceService.watchAggregates.path));
    watch.on("data", (r: WatchAggregatesResponse) => seen.push(r));
    const ended = new Promise<ServiceError>((resolve) => watch.on("error", resolve));
    // the watch is open once its consumer exists; readings then close two windows
    await pollUntil(async () => ((await (await jetstreamManager(nc)).streams.info("AGGREGATES")).state.consumer_count > 0 ? true : undefined), { what: "the watch" });
    const js = (await import("@nats-io/jetstream")).jetstream(nc);
    for (const [s, v] of [[1, 20], [5, 22], [12, 30], [25, 0]] as const) await js.publish("telemetry.plant-q.d1.temp", JSON.stringify({ ts: base + s * 1_000, value: v }));
    await pollUntil(() => seen.length >= 2 || undefined, { what: "two watched results", timeoutMs: 20_000 });
    expect(seen[0]?.aggregate).toMatchObject({ window: "q10", key: "plant-q.d1.temp", startMs: base, count: 2, values: { avg: 21, max: 22 } });

    const latest = await new Promise<unknown>((resolve, reject) => q.getLatest({ window: "q10", key: "plant-q.d1.temp" }, authFor(service, QueryServiceService.getLatest.path), (e, r) => (e === null ? resolve(r) : reject(e))));
    expect(latest).toMatchObject({ aggregate: { startMs: base + 10_000, count: 1, values: { avg: 30 } } });
    const range = await new Promise<{ aggregates: { startMs: number; count: number }[] }>((resolve, reject) =>
      q.getAggregates({ window: "q10", key: "plant-q.d1.temp", fromMs: base, toMs: base + 20_000, limit: 0 }, authFor(service, QueryServiceService.getAggregates.path), (e, r) => (e === null ? resolve(r) : reject(e))),
    );
    expect(range.aggregates.map((a) => [a.startMs, a.count])).toEqual([
      [base, 2],
      [base + 10_000, 1],
    ]);
    const missing = await refusal(new Promise((resolve, reject) => q.getLatest({ window: "q10", key: "plant-z.d9.temp" }, authFor(service, QueryServiceService.getLatest.path), (e, r) => (e === null ? resolve(r) : reject(e)))));
    expect(missing.code).toBe(status.NOT_FOUND);

    // revocation: the open watch ends with UNAUTHENTICATED
    await hub.keystore.withLock(() => revokeUsers(hub.keystore, "fleet", "watcher-q", "service"));
    const t0 = performance.now();
    await pushAccounts(hub.keystore, { servers: hub.urls, accounts: ["fleet"] });
    const err = await ended;
    expect(err.code).toBe(status.UNAUTHENTICATED);
    expect(performance.now() - t0).toBeLessThan(2_000);
  });

  it("sends a command once per idempotency key and reports the device's acknowledgement", async () => {
    const device = issueUser(hub.keystore, { account: "fleet", role: "device", name: "valve-7", site: "plant-c" });
    const dnc = await connectAs(hub.urls, device.creds ?? "", { inboxPrefix: "_INBOX.plant-c.valve-7" });
    h.defer(() => dnc.close());
    dnc.subscribe("cmd.plant-c.valve-7.>", {
      callback: (_err, m) => {
        const id = m.headers?.get(COMMAND_ID_HEADER) ?? "";
        const h2 = natsHeaders();
        void dnc.request(`events.plant-c.valve-7.${COMMAND_ACK_TYPE}`, JSON.stringify({ command: id, ok: true, detail: `opened to ${m.string()}` }), { headers: h2, timeout: 5_000 }).catch(() => undefined);
      },
    });
    await dnc.flush();
    const c = client(CommandServiceClient);
    const send = (): Promise<{ commandId: string; duplicate: boolean }> =>
      new Promise((resolve, reject) => c.sendCommand({ site: "plant-c", device: "valve-7", name: "open", payload: Buffer.from("50%"), idempotencyKey: "open-1" }, authFor(service, CommandServiceService.sendCommand.path), (e, r) => (e === null ? resolve(r) : reject(e))));
    const sent = await send();
    const again = await send();
    expect(again).toMatchObject({ commandId: sent.commandId, duplicate: true });
    const states: WatchCommandResponse[] = [];
    const watch = c.watchCommand({ commandId: sent.commandId }, authFor(service, CommandServiceService.watchCommand.path));
    watch.on("data", (r: WatchCommandResponse) => states.push(r));
    await new Promise<void>((resolve, reject) => {
      watch.on("end", resolve);
      watch.on("error", reject);
    });
    expect(states.map((s) => s.state)).toEqual([CommandState.COMMAND_STATE_STORED, CommandState.COMMAND_STATE_ACKED]);
    expect(states[1]?.detail.toString()).toBe("opened to 50%");
  });

  it("refuses bad provisioning input with INVALID_ARGUMENT before the token is spent; a revoked renewal is UNAUTHENTICATED/CREDENTIAL_REVOKED", async () => {
    const boot = issueBootstrap(hub.keystore, "fleet", "plant-g", 1, 600);
    const c = client(CredentialServiceClient);
    const call = <R>(f: (cb: (e: ServiceError | null, r: R) => void) => void): Promise<R> => new Promise((resolve, reject) => f((e, r) => (e === null ? resolve(r) : reject(e))));
    const kp = createKeyPair("user");
    const sign = (nonce: string): string => Buffer.from(kp.sign(Buffer.from(nonce, "utf8"))).toString("base64url");
    const provision = async (name: string): Promise<{ jwt: string }> => {
      const n = await call<{ nonce: string }>((cb) => c.getNonce({ operation: NonceOperation.NONCE_OPERATION_PROVISION }, cb));
      return call((cb) => c.provision({ token: boot.tokens[0] ?? "", name, publicKey: kp.publicKey, nonce: n.nonce, signature: sign(n.nonce) }, cb));
    };
    for (const name of ["Not A Token", "a.b", "x".repeat(5_000)]) {
      const bad = await refusal(provision(name));
      expect([bad.code, bad.metadata.get("fabric-error-code")]).toEqual([status.INVALID_ARGUMENT, ["FABRIC_ERR_PROVISION"]]);
      expect(bad.details).toMatch(/name/);
    }
    const { jwt } = await provision("meter-1");
    await hub.keystore.withLock(() => revokeUsers(hub.keystore, "fleet", kp.publicKey));
    await pushAccounts(hub.keystore, { servers: hub.urls, accounts: ["fleet"] });
    const n = await call<{ nonce: string }>((cb) => c.getNonce({ operation: NonceOperation.NONCE_OPERATION_RENEW }, cb));
    const revoked = await refusal(call((cb) => c.renew({ jwt, nonce: n.nonce, signature: sign(n.nonce) }, cb)));
    expect([revoked.code, revoked.metadata.get("fabric-error-code")]).toEqual([status.UNAUTHENTICATED, ["FABRIC_ERR_CREDENTIAL_REVOKED"]]);
  });

  it("provisions and renews a device credential over gRPC", async () => {
    const boot = issueBootstrap(hub.keystore, "fleet", "plant-d", 1, 600);
    const c = client(CredentialServiceClient);
    const call = <R>(f: (cb: (e: ServiceError | null, r: R) => void) => void): Promise<R> => new Promise((resolve, reject) => f((e, r) => (e === null ? resolve(r) : reject(e))));
    const kp = createKeyPair("user");
    const sign = (nonce: string): string => Buffer.from(kp.sign(Buffer.from(nonce, "utf8"))).toString("base64url");
    const PROVISION = { operation: NonceOperation.NONCE_OPERATION_PROVISION };
    const n1 = await call<{ nonce: string }>((cb) => c.getNonce(PROVISION, cb));
    const prov = await call<{ jwt: string; expiresAt: number }>((cb) => c.provision({ token: boot.tokens[0] ?? "", name: "sensor-1", publicKey: kp.publicKey, nonce: n1.nonce, signature: sign(n1.nonce) }, cb));
    expect(prov.jwt.split(".")).toHaveLength(3);
    expect(prov.expiresAt).toBeGreaterThan(Date.now() / 1000);
    // the same token, name and key again (a retry after a lost reply): a credential again
    const n2 = await call<{ nonce: string }>((cb) => c.getNonce(PROVISION, cb));
    const again = await call<{ jwt: string }>((cb) => c.provision({ token: boot.tokens[0] ?? "", name: "sensor-1", publicKey: kp.publicKey, nonce: n2.nonce, signature: sign(n2.nonce) }, cb));
    expect(again.jwt.split(".")).toHaveLength(3);
    // the nonce is spent with it
    const reused = await refusal(call((cb) => c.provision({ token: boot.tokens[0] ?? "", name: "sensor-1", publicKey: kp.publicKey, nonce: n2.nonce, signature: sign(n2.nonce) }, cb)));
    expect([reused.code, reused.metadata.get("fabric-error-code")]).toEqual([status.FAILED_PRECONDITION, ["FABRIC_ERR_NONCE_USED"]]);
    // the spent token for another device
    const other = createKeyPair("user");
    const n2b = await call<{ nonce: string }>((cb) => c.getNonce(PROVISION, cb));
    const used = await refusal(call((cb) => c.provision({ token: boot.tokens[0] ?? "", name: "sensor-2", publicKey: other.publicKey, nonce: n2b.nonce, signature: Buffer.from(other.sign(Buffer.from(n2b.nonce, "utf8"))).toString("base64url") }, cb)));
    expect([used.code, used.metadata.get("fabric-error-code")]).toEqual([status.ALREADY_EXISTS, ["FABRIC_ERR_TOKEN_USED"]]);
    // a nonce needs its operation
    const noOp = await refusal(call((cb) => c.getNonce({ operation: NonceOperation.NONCE_OPERATION_UNSPECIFIED }, cb)));
    expect([noOp.code, noOp.metadata.get("fabric-error-code")]).toEqual([status.INVALID_ARGUMENT, ["FABRIC_ERR_INVALID_INPUT"]]);
    const n3 = await call<{ nonce: string }>((cb) => c.getNonce({ operation: NonceOperation.NONCE_OPERATION_RENEW }, cb));
    const renewed = await call<{ jwt: string; expiresAt: number }>((cb) => c.renew({ jwt: prov.jwt, nonce: n3.nonce, signature: sign(n3.nonce) }, cb));
    const claims = (jwt: string): { sub: string; name: string } => JSON.parse(Buffer.from(jwt.split(".")[1] ?? "", "base64url").toString()) as { sub: string; name: string };
    expect(claims(renewed.jwt)).toMatchObject({ sub: kp.publicKey, name: "sensor-1" });
    expect(renewed.expiresAt).toBeGreaterThanOrEqual(prov.expiresAt);
  });
});
