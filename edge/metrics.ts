import { counter, gauge, ScrapeSnapshot } from "../fabric/core/index.js";
import type { SiteReport, SiteStreamReport } from "../leafnode-config/index.js";

/**
 * An edge site's metrics, made from the agent's own report at scrape time (the report is what the hub sees on
 * `$FABRIC.edge.<site>.status`): link state, backlog, buffer use, drops, restarts.
 */

/** Reports of the sites this process runs, read once per scrape (a site that does not answer is left out). */
const snapshot = new ScrapeSnapshot<() => Promise<SiteReport>, SiteReport>(async (sources) =>
  (await Promise.all(sources.map((f) => f().catch(() => undefined)))).filter((r) => r !== undefined),
);
const reports = (): Promise<SiteReport[]> => snapshot.readings();

function eachStream(r: SiteReport, f: (s: SiteStreamReport) => void): void {
  for (const s of [r.streams.events, r.streams.telemetry, r.streams.aggregates]) if (s !== undefined) f(s);
}

type SiteLabels = "site";
type StreamLabels = "site" | "stream";

function siteGauge(name: string, help: string, pick: (r: SiteReport) => number): void {
  gauge<SiteLabels>({
    name,
    help,
    labelNames: ["site"],
    async collect() {
      const all = await reports();
      this.reset();
      for (const r of all) this.set({ site: r.site }, pick(r));
    },
  });
}

function streamGauge(name: string, help: string, pick: (s: SiteStreamReport) => number): void {
  gauge<StreamLabels>({
    name,
    help,
    labelNames: ["site", "stream"],
    async collect() {
      const all = await reports();
      this.reset();
      for (const r of all) eachStream(r, (s) => this.set({ site: r.site, stream: s.stream }, pick(s)));
    },
  });
}

/** A counter the agent keeps itself (since it started): taken as is at each scrape. */
function reportedCounter<L extends string>(name: string, help: string, labelNames: readonly L[], fill: (r: SiteReport, add: (labels: Record<L, string>, v: number) => void) => void): void {
  counter<L>({
    name,
    help,
    labelNames,
    async collect() {
      const all = await reports();
      this.reset();
      for (const r of all) fill(r, (labels, v) => this.inc(labels as Partial<Record<L, string>>, v));
    },
  });
}

siteGauge("fabric_edge_link_up", "1 while the site's leaf link to the hub is up, else 0", (r) => (r.link === "up" ? 1 : 0));
siteGauge("fabric_edge_link_state_seconds", "seconds the link has been in its present state (up or down)", (r) => Math.max(0, (r.at - r.linkSince) / 1000));
streamGauge("fabric_edge_backlog_messages", "messages buffered at the site and not yet acknowledged by the hub", (s) => s.backlog);
streamGauge("fabric_edge_backlog_age_seconds", "age of the oldest message of the backlog (0 without one)", (s) => s.oldestBacklogMs / 1000);
streamGauge("fabric_edge_buffer_bytes", "bytes the site's stream holds", (s) => s.bytes);
streamGauge("fabric_edge_buffer_limit_bytes", "bytes the site's stream may hold (its share of the outage budget)", (s) => s.maxBytes);
streamGauge("fabric_edge_buffer_full", "1 when the site's stream is full (with reject-new, publishers are refused)", (s) => (s.full ? 1 : 0));
reportedCounter("fabric_edge_dropped_messages_total", "messages the buffer dropped (drop-oldest) before the hub had them, since the agent started", ["site", "stream"], (r, add) =>
  eachStream(r, (s) => add({ site: r.site, stream: s.stream }, s.dropped)),
);
reportedCounter("fabric_edge_source_restarts_total", "stalled hub sources of the site restarted, since the agent started", ["site"], (r, add) => add({ site: r.site }, r.sourceRestarts));
reportedCounter("fabric_edge_server_restarts_total", "restarts of the site's leaf server by the agent, since it started", ["site"], (r, add) => add({ site: r.site }, r.serverRestarts));

/** Reports a site in this process's metrics until the returned function is called. */
export function monitorSite(report: () => Promise<SiteReport>): () => void {
  return snapshot.add(report);
}
