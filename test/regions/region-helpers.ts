import { cpSync } from "node:fs";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { pollUntil } from "../../fabric/core/index.js";
import { putRegionLink, regionCopyStream, type RegionLinkStatus, type RegionStreamKind } from "../../fabric/hub/index.js";
import { initKeystore, issueUser, Keystore } from "../../identity/index.js";
import { connectAs, startTcpProxy, startTestHub, type Harness, type TcpProxy, type TestHub } from "../harness/index.js";

export interface TestRegion {
  name: string;
  hub: TestHub;
  ks: Keystore;
  url: string;
}

export interface TestRegions {
  regions: Record<string, TestRegion>;
  /** The proxy between each dialer and its peer, by `<dialer>-<peer>`. */
  proxies: Record<string, TcpProxy>;
  /** A service connection into a region's tenant account. */
  service(region: string): Promise<NatsConnection>;
  /** The region's view of its links once every one is up. */
  waitLinked(region: string, timeoutMs?: number): Promise<RegionLinkStatus[]>;
  /** Stops a region's hub and starts it again on its data (new ports: the proxies to it follow). */
  restart(region: string): Promise<void>;
}

/**
 * Regions on this machine: one operator keystore, copied for each region (as an operator would), each region a
 * real hub (`fabric up --region`); each link `[dialer, peer]` goes through a TCP proxy the test can cut and delay.
 */
export async function startTestRegions(h: Harness, names: readonly string[], links: readonly (readonly [string, string])[], options: { delayMs?: number; streams?: RegionStreamKind[]; mqtt?: boolean } = {}): Promise<TestRegions> {
  const root = h.tempDir("fabric-regions-");
  const master = join(root, "operator-keys");
  initKeystore(master);
  const regions: Record<string, TestRegion> = {};
  for (const name of names) {
    const keystoreDir = join(root, `${name}-keys`);
    cpSync(master, keystoreDir, { recursive: true });
    const hub = await startTestHub(h, { keystoreDir, region: name, windows: false, sinks: false, mqtt: options.mqtt ?? false });
    regions[name] = { name, hub, ks: Keystore.open(keystoreDir), url: hub.urls[0] ?? "" };
  }
  const proxies: Record<string, TcpProxy> = {};
  const streams = (options.streams ?? ["events"]).map((kind) => ({ kind }));
  for (const [dialer, peer] of links) {
    const d = regions[dialer];
    const p = regions[peer];
    if (d === undefined || p === undefined) throw new Error(`no region ${dialer} or ${peer}`);
    const proxy = await startTcpProxy(p.hub.nodes[0]?.ports.leafnode ?? 0);
    proxy.delayMs = options.delayMs ?? 0;
    h.defer(() => proxy.close());
    proxies[`${dialer}-${peer}`] = proxy;
    putRegionLink(d.hub.dataDir, { peer, urls: [`nats-leaf://127.0.0.1:${proxy.port}`], streams });
    putRegionLink(p.hub.dataDir, { peer: dialer, streams });
  }
  for (const r of Object.values(regions)) await r.hub.regions?.apply();
  const service = async (region: string): Promise<NatsConnection> => {
    const r = regions[region];
    if (r === undefined) throw new Error(`no region ${region}`);
    const creds = issueUser(r.ks, { account: "fleet", role: "service", name: `test-${region}` }).creds ?? "";
    const nc = await connectAs(r.url, creds, { reconnect: true });
    h.defer(() => nc.close());
    return nc;
  };
  const waitLinked = async (region: string, timeoutMs = 30_000): Promise<RegionLinkStatus[]> => {
    const r = regions[region];
    if (r?.hub.regions === undefined) throw new Error(`region ${region} runs no links`);
    const runner = r.hub.regions;
    return pollUntil(
      async () => {
        const s = await runner.status();
        return s.length > 0 && s.every((l) => l.up) ? s : undefined;
      },
      { timeoutMs, intervalMs: 200, what: `links of region ${region} up` },
    );
  };
  const restart = async (region: string): Promise<void> => {
    const r = regions[region];
    if (r === undefined) throw new Error(`no region ${region}`);
    await r.hub.stop();
    r.hub = await startTestHub(h, { keystoreDir: r.hub.keystoreDir, dataDir: r.hub.dataDir, region, windows: false, sinks: false, mqtt: options.mqtt ?? false });
    r.url = r.hub.urls[0] ?? "";
    for (const [key, proxy] of Object.entries(proxies)) if (key.endsWith(`-${region}`)) proxy.target = r.hub.nodes[0]?.ports.leafnode ?? 0;
  };
  return { regions, proxies, service, waitLinked, restart };
}

/** The subjects of a region's copy of a peer's stream, in order (a stream of a few thousand messages). */
export async function copySubjects(nc: NatsConnection, peer: string, kind: RegionStreamKind = "events"): Promise<Map<string, number>> {
  const jsm = await jetstreamManager(nc);
  const si = await jsm.streams.info(regionCopyStream(peer, kind), { subjects_filter: ">" });
  return new Map(Object.entries(si.state.subjects ?? {}));
}
