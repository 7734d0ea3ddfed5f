import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { Kvm } from "@nats-io/kv";
import { jetstream } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { PNG } from "pngjs";
import { createLogger, pollUntil } from "../../fabric/core/index.js";
import { addSite, createStatusSource, hubCredsPath, startStatusPage, STATUS_TOKEN_FILE, type StatusPageData } from "../../fabric/hub/index.js";
import { issueUser, revokeUsers } from "../../identity/index.js";
import { EDGE_SITES_BUCKET, saveDefinition } from "../../streams/index.js";
import type { SiteReport } from "../../leafnode-config/index.js";
import { connectAs, Harness, startTestHub, testLogger, type TestHub } from "../harness/index.js";
import { findChromium, headless, WINDOW, type ChromiumBinary } from "../harness/chromium.js";

const SITE = "plant-shot";
const RATE = 200; // msg/s the load sends for SITE
const TICK_MS = 50;

const h = new Harness();
let hub: TestHub;
let nc: NatsConnection;
let pageUrl: string;
let chromium: ChromiumBinary;

beforeAll(async () => {
  chromium = await findChromium();
  hub = await startTestHub(h, { grpc: true, statusPage: { host: "127.0.0.1" } });
  if (hub.statusPage === undefined) throw new Error("the hub serves no status page");
  pageUrl = hub.statusPage.url;
  nc = await connectAs(hub.urls, readFileSync(hubCredsPath(hub.dataDir, "fleet"), "utf8"));
  h.defer(() => nc.close());
});
afterAll(() => h.dispose());

async function statusJson(url: string, headers: Record<string, string> = {}): Promise<StatusPageData> {
  const res = await fetch(new URL("status.json", url), { headers });
  if (!res.ok) throw new Error(`status.json: ${res.status}`);
  return (await res.json()) as StatusPageData;
}

/** Telemetry of SITE at RATE msg/s on an absolute schedule (JetStream publishes, acknowledged), until stopped. */
function startLoad(): { stop(): Promise<{ sent: number; ms: number }> } {
  const js = jetstream(nc);
  const perTick = (RATE * TICK_MS) / 1_000;
  const started = Date.now();
  let sent = 0;
  let running = true;
  const loop = (async () => {
    for (let tick = 0; running; tick++) {
      const due = started + tick * TICK_MS;
      const wait = due - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      const batch = Array.from({ length: perTick }, (_, i) => js.publish(`telemetry.${SITE}.d${i % 5}.temp`, JSON.stringify({ value: 20 + (i % 7), ts: Date.now() })));
      await Promise.all(batch);
      sent += perTick;
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return { sent, ms: Date.now() - started };
    },
  };
}

function siteReport(): SiteReport {
  const now = Date.now();
  const stream = (name: string, backlog: number) => ({ stream: name, messages: backlog, bytes: backlog * 100, maxBytes: 1 << 30, overflow: "drop-oldest" as const, backlog, oldestBacklogMs: 0, dropped: 0, full: false });
  return { site: SITE, at: now, link: "up", linkSince: now - 60_000, streams: { events: stream("EDGE_EVENTS", 0), telemetry: stream("EDGE_TELEMETRY", 37) }, shipping: ["events", "telemetry"], trustSyncedAt: now, serverRestarts: 0, sourceRestarts: 0 };
}

/** The text of the element whose opening tag carries `attr` (the DOM as Chromium dumped it), tags stripped. */
function rowText(dom: string, attr: string): string {
  const start = dom.indexOf(attr);
  if (start < 0) return "";
  const end = dom.indexOf("</tr>", start);
  return dom.slice(start, end).replace(/<[^>]*>/g, " ").replace(/\s+/g, " ");
}

describe("status page", () => {
  it("shows a real browser the live picture during load: the site, its rate, streams, workers, revocations", async () => {
    // an edge site as the hub knows one: sourced, with its latest report in KV edge_sites
    await addSite(nc, SITE);
    await (await new Kvm(nc).open(EDGE_SITES_BUCKET)).put(SITE, JSON.stringify(siteReport()));
    await saveDefinition(nc, { name: "temp-10s", window: { kind: "tumbling", sizeMs: 10_000 }, aggregates: ["count", "avg"] });
    const ks = hub.keystore;
    await ks.withLock(() => issueUser(ks, { account: "fleet", role: "device", name: "sensor-gone", site: SITE }));
    await ks.withLock(() => revokeUsers(ks, "fleet", "sensor-gone", "device"));
    // a device connected: the registry has it online
    const live = await ks.withLock(() => issueUser(ks, { account: "fleet", role: "device", name: "sensor-live", site: SITE }));
    const liveNc = await connectAs(hub.urls, live.creds ?? "");
    h.defer(() => liveNc.close());

    const load = startLoad();
    try {
      // the page's data has a rate for the site and a live window worker (rates are taken over the last seconds)
      const data = await pollUntil(
        async () => {
          const d = await statusJson(pageUrl);
          const site = d.sites.find((s) => s.site === SITE);
          return site?.rate !== null && site?.rate !== undefined && site.rate > RATE * 0.5 && (d.windows[0]?.members.length ?? 0) > 0 && d.devices.online >= 1 ? d : undefined;
        },
        { intervalMs: 250, timeoutMs: 30_000, what: "a site rate and a window worker in status.json" },
      );
      expect(data.servers.map((s) => s.healthy)).toEqual([true]);
      expect(data.clients.grpc).toEqual({ calls: 0, streams: 0 });

      const shot = join(h.tempDir("fabric-shot-"), "status.png");
      const dom = await headless(chromium, pageUrl, { dumpDom: true }, 3_000, h.tempDir("fabric-chromium-"));
      await headless(chromium, pageUrl, { screenshot: shot }, 3_000, h.tempDir("fabric-chromium-"));
      const { sent, ms } = await load.stop();
      const sentRate = sent / (ms / 1_000);
      expect(sentRate).toBeGreaterThan(RATE * 0.9);

      // the DOM as the page rendered it from status.json
      const siteRow = rowText(dom, `data-site="${SITE}"`);
      expect(siteRow).toContain(SITE);
      expect(siteRow).toContain(" up ");
      expect(siteRow).toContain("telemetry 37"); // the backlog the site reported
      const shown = /(\d+(?:\.\d)?) msg\/s/.exec(siteRow);
      expect(shown, siteRow).not.toBeNull();
      const rate = Number(shown?.[1]);
      expect(rate).toBeGreaterThan(sentRate * 0.75);
      expect(rate).toBeLessThan(sentRate * 1.25);
      const telemetryRow = rowText(dom, 'data-stream="TELEMETRY"');
      expect(telemetryRow).toMatch(/fleet\/TELEMETRY \d+(\.\d)? msg\/s/);
      for (const stream of ["TELEMETRY", "EVENTS", "AGGREGATES", "COMMANDS", "REJECTED"]) expect(dom).toContain(`fleet/${stream}`);
      expect(rowText(dom, 'data-window="temp-10s"')).toMatch(/temp-10s \S+/);
      expect(dom).toContain("device sensor-gone @ plant-shot");
      expect(rowText(dom, `data-device="${SITE}/sensor-live"`)).toMatch(/sensor-live online nats/);
      expect(dom).toMatch(/1 server\(s\) healthy/);

      // the screenshot: a PNG of the window's size with the page drawn on it (not one colour)
      expect(statSync(shot).size).toBeGreaterThan(10_000);
      const png = PNG.sync.read(readFileSync(shot));
      expect({ width: png.width, height: png.height }).toEqual(WINDOW);
      const colours = new Set<number>();
      for (let i = 0; i < png.data.length; i += 4 * 97) colours.add(png.data.readUInt32BE(i));
      expect(colours.size).toBeGreaterThan(20);
      const row = (y: number): string => png.data.subarray(y * png.width * 4, (y + 1) * png.width * 4).toString("hex");
      expect(row(20)).not.toEqual(row(WINDOW.height - 20)); // the dark header against the page below
    } finally {
      await load.stop();
    }
  });

  it("asks for its token beyond loopback (401 without, 200 with Bearer or Basic) and is read-only", async () => {
    // loopback (the hub's page): open
    expect((await fetch(pageUrl)).status).toBe(200);
    expect((await fetch(new URL("status.json", pageUrl), { method: "POST" })).status).toBe(405);

    // 127.0.0.2 is not loopback-only by configuration (Linux routes 127/8 to lo, so the test can reach it)
    const dataDir = h.tempDir("fabric-status-");
    const logLines: string[] = [];
    const logger = createLogger({ level: "info", destination: { write: (l: string) => logLines.push(l) } as unknown as NodeJS.WritableStream });
    const source = createStatusSource({ keystore: hub.keystore, servers: hub.urls, logger: testLogger() });
    const page = await startStatusPage({ host: "127.0.0.2", port: 0, dataDir, source, logger });
    h.defer(() => page.stop());
    expect(page.tokenFile).toBe(join(dataDir, STATUS_TOKEN_FILE));
    expect(statSync(join(dataDir, STATUS_TOKEN_FILE)).mode & 0o777).toBe(0o600);
    const token = readFileSync(join(dataDir, STATUS_TOKEN_FILE), "utf8").trim();
    expect(token.length).toBeGreaterThanOrEqual(32);

    const bare = await fetch(page.url);
    expect(bare.status).toBe(401);
    expect(bare.headers.get("www-authenticate")).toMatch(/^Basic realm="fabric status"/);
    expect((await fetch(new URL("status.json", page.url))).status).toBe(401);
    expect((await fetch(page.url, { headers: { Authorization: "Bearer not-the-token" } })).status).toBe(401);
    expect((await fetch(page.url, { headers: { Authorization: `Basic ${Buffer.from("fabric:wrong").toString("base64")}` } })).status).toBe(401);

    const html = await fetch(page.url, { headers: { Authorization: `Basic ${Buffer.from(`fabric:${token}`).toString("base64")}` } });
    expect(html.status).toBe(200);
    expect(html.headers.get("content-security-policy")).toMatch(/script-src 'sha256-/);
    expect(await html.text()).toContain("<title>fabric status</title>");
    const data = await statusJson(page.url, { Authorization: `Bearer ${token}` });
    expect(data.servers[0]?.healthy).toBe(true);

    // the logs name its file, never its value
    expect(logLines.join("")).toContain(STATUS_TOKEN_FILE);
    expect(logLines.join("")).not.toContain(token);
  });
});
