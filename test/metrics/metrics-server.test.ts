import { afterAll, describe, expect, it } from "vitest";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { monitorNatsServers, startMetricsServer } from "../../fabric/core/index.js";
import { Harness, testLogger } from "../harness/index.js";

const h = new Harness();
afterAll(() => h.dispose());

describe("the metrics server", () => {
  it("serves /metrics in Prometheus text format, the routes it is given, 404 for anything else and 405 for a POST to /metrics", async () => {
    const server = await startMetricsServer({
      port: 0,
      logger: testLogger(),
      routes: { "/status": (_req, res) => void res.writeHead(200, { "content-type": "text/plain" }).end("ok") },
    });
    h.defer(() => server.stop());
    expect(server.url).toBe(`http://127.0.0.1:${server.port}/metrics`);
    const res = await fetch(server.url);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
    const body = await res.text();
    expect(body).toMatch(/^# TYPE process_cpu_seconds_total counter$/m);
    expect(body).toMatch(/^process_resident_memory_bytes \d+/m);
    expect((await fetch(`http://127.0.0.1:${server.port}/metrics?x=1`)).status).toBe(200);
    expect(await (await fetch(`http://127.0.0.1:${server.port}/status`)).text()).toBe("ok");
    expect((await fetch(`http://127.0.0.1:${server.port}/`)).status).toBe(404);
    expect((await fetch(`http://127.0.0.1:${server.port}/metricsx`)).status).toBe(404);
    expect((await fetch(server.url, { method: "POST" })).status).toBe(405);
  });

  it("serves a monitored nats-server's figures at scrape time, up 0 for one that does not answer, and forgets them when told", async () => {
    const srv = await h.startServer({ name: "mon-1" });
    const nc = await connect({ servers: srv.url });
    h.defer(() => nc.close());
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: "MON", subjects: ["mon.>"] });
    for (let i = 0; i < 7; i++) await nc.request("mon.x", "m").catch(() => undefined); // JetStream answers each with its ack
    await jsm.consumers.add("MON", { durable_name: "reader", ack_policy: "explicit" });
    const unmonitor = monitorNatsServers(() => [
      { name: "mon-1", port: srv.ports.monitoring },
      { name: "gone", port: 1 },
    ]);
    const server = await startMetricsServer({ port: 0, logger: testLogger() });
    h.defer(() => server.stop());
    const body = await (await fetch(server.url)).text();
    expect(body).toMatch(/^nats_server_up\{server="mon-1"\} 1$/m);
    expect(body).toMatch(/^nats_server_up\{server="gone"\} 0$/m);
    expect(body).toMatch(/^nats_server_connections\{server="mon-1"\} [1-9]/m);
    expect(body).toMatch(/^nats_jetstream_stream_messages\{server="mon-1",account="\$G",stream="MON"\} 7$/m);
    expect(body).toMatch(/^nats_jetstream_consumer_num_pending\{server="mon-1",account="\$G",stream="MON",consumer="reader"\} 7$/m);
    expect(body).not.toMatch(/server="gone",account/);
    unmonitor();
    const after = await (await fetch(server.url)).text();
    expect(after).not.toMatch(/server="mon-1"/);
  });
});
