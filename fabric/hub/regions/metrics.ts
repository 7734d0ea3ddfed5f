import { counter, gauge, histogram } from "../../core/index.js";
import { REGION_STREAM_KINDS } from "./links.js";
import type { RegionLinkStatus, RegionStreamStatus } from "./status.js";

/** What the running region links report at each scrape. */
const sources = new Set<() => Promise<RegionLinkStatus[]>>();
/** One read of JetStream per scrape, shared by the gauges (each collects on its own). */
const SCRAPE_SHARE_MS = 500;
let last: { at: number; read: Promise<RegionLinkStatus[]> } | undefined;
const statuses = (): Promise<RegionLinkStatus[]> => {
  if (last === undefined || Date.now() - last.at > SCRAPE_SHARE_MS) {
    last = { at: Date.now(), read: Promise.all([...sources].map((s) => s().catch(() => []))).then((all) => all.flat()) };
  }
  return last.read;
};
gauge<"peer">({
  name: "fabric_region_link_up",
  help: "1 while a linked peer region is heard from (its copy sources active within 5 s), else 0",
  labelNames: ["peer"],
  async collect() {
    this.reset();
    for (const l of await statuses()) this.set({ peer: l.peer }, l.up ? 1 : 0);
  },
});
for (const [name, help, value] of [
  ["fabric_region_lag_messages", "messages of a peer region's stream its copy here has yet to take", (s: RegionStreamStatus) => s.lag],
  ["fabric_region_backlog_messages", "messages of this region's stream a linked peer has yet to take", (s: RegionStreamStatus) => s.backlog],
  ["fabric_region_copy_messages", "messages in this region's copy of a peer region's stream", (s: RegionStreamStatus) => s.messages],
  ["fabric_region_source_active_seconds", "seconds since the copy of a peer's stream last heard from the peer (-1: never)", (s: RegionStreamStatus) => (s.activeMs < 0 ? -1 : s.activeMs / 1000)],
] as const) {
  gauge<"peer" | "stream">({
    name,
    help,
    labelNames: ["peer", "stream"],
    async collect() {
      this.reset();
      for (const l of await statuses()) for (const s of l.streams) this.set({ peer: l.peer, stream: REGION_STREAM_KINDS[s.kind].stream }, value(s));
    },
  });
}

const relayed = counter<"direction" | "result">({
  name: "fabric_region_claims_total",
  help: "account JWT updates relayed between regions: out (sent to the peers), in (from a peer: adopted, known already, or invalid)",
  labelNames: ["direction", "result"],
});
const applySeconds = histogram({
  name: "fabric_region_claims_apply_seconds",
  help: "time from a peer's account update arriving to this region's servers holding it (re-signed and pushed)",
});

export const regionMetrics = {
  /** A runner reports its links until the returned function is called. */
  register(status: () => Promise<RegionLinkStatus[]>): () => void {
    sources.add(status);
    return () => {
      sources.delete(status);
    };
  },
  relayed(direction: "out" | "in", result: "sent" | "adopted" | "known" | "invalid"): void {
    relayed.inc({ direction, result });
  },
  applied(seconds: number): void {
    applySeconds.observe(seconds);
  },
};
