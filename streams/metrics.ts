import { counter, gauge } from "../fabric/core/index.js";

/**
 * The window workers' metrics. Readings in are counted by each worker in a plain number and added at scrape
 * time (nothing per reading but an increment); lag and checkpoint age are read from the live workers then.
 */

/** What a running window worker shows at a scrape. */
export interface WindowMetricsSource {
  readonly window: string;
  /** Readings handled since the last call (and zeroes it). */
  takeEvents(): number;
  /** Each owned partition: messages of the source not yet included, seconds since its last checkpoint. */
  partitions(): readonly { partition: number; lagMessages: number; checkpointAgeSeconds: number }[];
}

const sources = new Set<WindowMetricsSource>();

const events = counter<"window">({
  name: "fabric_window_events_total",
  help: "source messages (readings or partials) a window worker read, by window",
  labelNames: ["window"],
  collect() {
    for (const s of sources) addEvents(this, s);
  },
});
function addEvents(c: typeof events, s: WindowMetricsSource): void {
  const n = s.takeEvents();
  if (n > 0) c.inc({ window: s.window }, n);
}
const results = counter<"window" | "kind">({ name: "fabric_window_results_total", help: "window results emitted to AGGREGATES, by window and kind (final, early, revision)", labelNames: ["window", "kind"] });
const late = counter<"window">({ name: "fabric_window_late_readings_total", help: "readings too late for their window (kept in REJECTED), by window", labelNames: ["window"] });
const rejected = counter<"window">({ name: "fabric_window_rejected_readings_total", help: "readings a window could not use (no key, no numeric value or time; kept in REJECTED), by window", labelNames: ["window"] });

gauge<"window" | "partition">({
  name: "fabric_window_partition_lag_messages",
  help: "messages of the source stream a window partition owned by this process has not included yet",
  labelNames: ["window", "partition"],
  collect() {
    this.reset();
    for (const s of sources) for (const p of s.partitions()) this.set({ window: s.window, partition: String(p.partition) }, p.lagMessages);
  },
});
gauge<"window" | "partition">({
  name: "fabric_window_checkpoint_age_seconds",
  help: "seconds since a window partition owned by this process was last checkpointed (or taken over)",
  labelNames: ["window", "partition"],
  collect() {
    this.reset();
    for (const s of sources) for (const p of s.partitions()) this.set({ window: s.window, partition: String(p.partition) }, p.checkpointAgeSeconds);
  },
});

export const windowMetrics = {
  /** A worker reports until the returned function is called (which adds what it counted last). */
  register(source: WindowMetricsSource): () => void {
    sources.add(source);
    return () => {
      if (!sources.delete(source)) return;
      addEvents(events, source);
    };
  },
  result(window: string, kind: string): void {
    results.inc({ window, kind });
  },
  late(window: string): void {
    late.inc({ window });
  },
  rejected(window: string): void {
    rejected.inc({ window });
  },
};
