import { afterAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { makeGenericClientConstructor, type ChannelCredentials, type Client, type ServiceError } from "@grpc/grpc-js";
import { service as healthService } from "grpc-health-check";
import { grpcClient, Harness, runCli, startCli, startTestHub } from "../harness/index.js";
import { startTestSite } from "../edge/site-helpers.js";

/** `fabric serve`: the hub's services against servers it did not start (a cluster from `fabric config hub`). */
const h = new Harness();
afterAll(() => h.dispose());

function children(pid: number): string {
  return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim();
}

describe("fabric serve", () => {
  it("runs the identity service, sites and the gRPC gateway against running servers, and stops on SIGINT", async () => {
    // servers whose own process runs no identity service: what a site needs from one comes from `fabric serve`
    const hub = await startTestHub(h, { windows: false, identityService: false });
    const monitor = hub.nodes[0]?.ports.monitoring ?? 0;
    const serve = startCli("fabric", ["serve", "--server", ...hub.urls, "--store", hub.keystoreDir, "--data", h.tempDir("fabric-serve-"), "--host", "127.0.0.1", "--no-mqtt", "--grpc-port", "0", "--status-port", "0", "--metrics-port", "0", "--monitor", `http://127.0.0.1:${monitor}`, "--json"]);
    h.defer(async () => void (await serve.signal("SIGKILL")));
    const ready = await serve.json<{ urls: string[]; grpc: number; metrics: { url: string }; streams: { created: string[]; unchanged: string[] } }>();
    expect(ready.urls).toEqual(hub.urls);
    expect(ready.streams.created).toEqual([]);
    expect(ready.streams.unchanged).toContain("TELEMETRY");
    expect(children(serve.pid)).toBe(""); // no nats-server of its own
    // its /metrics carries the figures of the servers it was given with --monitor
    const scraped = await (await fetch(ready.metrics.url)).text();
    expect(scraped).toContain(`nats_server_up{server="127.0.0.1:${monitor}"} 1`);
    expect(scraped).toMatch(new RegExp(`nats_jetstream_stream_messages\\{[^}]*stream="TELEMETRY"[^}]*\\} \\d+`));
    // a site's first start fetches its trust from the identity service (here only serve's) and registers
    const s = await startTestSite(h, hub, "served");
    await s.edge.caughtUp();
    type HealthClient = Client & { check(req: object, cb: (err: ServiceError | null, res: { status: string }) => void): void };
    const hc = grpcClient(makeGenericClientConstructor(healthService, "Health") as unknown as new (a: string, c: ChannelCredentials) => HealthClient, ready.grpc);
    const health = await new Promise<{ status: string }>((resolve, reject) => hc.check({ service: "fabric.v1.PublishService" }, (err, r) => (err === null ? resolve(r) : reject(err))));
    expect(health.status).toBe("SERVING");
    hc.close();
    expect(await serve.signal("SIGINT")).toBe(0);
  });

  it("refuses a missing keystore, a bad server URL and replicas it cannot have, naming them", async () => {
    const home = h.tempDir("fabric-home-");
    const noStore = await runCli("fabric", ["serve", "--server", "nats://127.0.0.1:1", "--store", `${home}/nope`, "--data", `${home}/data`]);
    expect(noStore.code).not.toBe(0);
    expect(noStore.stderr).toMatch(/no keystore at .*nope/);
    expect((await runCli("fabric-id", ["init"], { env: { FABRIC_HOME: home } })).code).toBe(0);
    const badUrl = await runCli("fabric", ["serve", "--server", "http://x", "--data", `${home}/data`], { env: { FABRIC_HOME: home } });
    expect(badUrl.code).toBe(2);
    expect(badUrl.stderr).toMatch(/serve options\.servers\.0: a server is nats:\/\/host:port/);
    const badReplicas = await runCli("fabric", ["serve", "--server", "nats://127.0.0.1:1", "--replicas", "2", "--data", `${home}/data`], { env: { FABRIC_HOME: home } });
    expect(badReplicas.code).toBe(2);
    expect(badReplicas.stderr).toMatch(/serve options\.replicas: replicas are 1, 3 or 5/);
    const badMonitor = await runCli("fabric", ["serve", "--server", "nats://127.0.0.1:1", "--monitor", "127.0.0.1:8222", "--data", `${home}/data`], { env: { FABRIC_HOME: home } });
    expect(badMonitor.code).toBe(2);
    expect(badMonitor.stderr).toMatch(/--monitor "127\.0\.0\.1:8222" is not a URL/);
    const notHttp = await runCli("fabric", ["serve", "--server", "nats://127.0.0.1:1", "--monitor", "nats://127.0.0.1:8222", "--data", `${home}/data`], { env: { FABRIC_HOME: home } });
    expect(notHttp.stderr).toMatch(/--monitor "nats:\/\/127\.0\.0\.1:8222" must be http:\/\/host:port/);
  });
});
