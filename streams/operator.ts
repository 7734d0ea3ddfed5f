import { AGGREGATES, type Aggregate, type AggregateName } from "./aggregates.js";
import type { WindowDefinition } from "./definition.js";
import { sliceStart, slicesOf, windowsOf, type SlicedWindowSpec } from "./windows.js";

/** A window result, an early (partial) one, a revision after a late reading, or a reading too late to count. */
export type Emission =
  | {
      kind: "final" | "early" | "revision";
      key: string;
      windowStart: number;
      windowEnd: number;
      /** 0 for the first final result, then 1, 2… for re-firings after late readings. */
      revision: number;
      results: Partial<Record<AggregateName, number | null>>;
      count: number;
    }
  | { kind: "late"; key: string; ts: number; value: number; reason: string };

/** The operator's state as data (see snapshot/restore). */
export interface OperatorSnapshot {
  keys: {
    key: string;
    maxTs: number;
    watermark: number;
    lastSeen: number;
    lastEarly: number;
    slices: { start: number; n: number; states: Partial<Record<AggregateName, unknown>> }[];
    revisions: [number, number][];
    dirty: number[];
  }[];
}

interface SliceState {
  n: number;
  states: Partial<Record<AggregateName, unknown>>;
}

interface KeyState {
  /** Latest event time seen, and the watermark that trails it. */
  maxTs: number;
  watermark: number;
  lastSeen: number;
  slices: Map<number, SliceState>;
  /** Windows re-fired after late readings: their latest revision. */
  revisions: Map<number, number>;
  /** Open windows with data since the last early firing. */
  dirty: Set<number>;
  lastEarly: number;
}

/**
 * The windowed aggregation of one definition, in memory and deterministic (time comes in as arguments): per key
 * a watermark (its own latest event time less the bounded out-of-orderness, so one device's skew or replay never
 * makes another's data late), slice accumulators, final results when the watermark passes a window's end,
 * revisions for readings within the allowed lateness, `late` emissions beyond it, early firings, and a
 * processing-time close for keys that went silent. Tumbling and hopping windows.
 */
export class WindowOperator {
  private readonly keys = new Map<string, KeyState>();
  private readonly spec: SlicedWindowSpec;
  private readonly aggregates: [AggregateName, Aggregate<unknown>][];

  constructor(private readonly def: WindowDefinition) {
    if (def.window.kind === "session") throw new Error("session windows are not handled by WindowOperator yet");
    this.spec = def.window;
    this.aggregates = def.aggregates.map((n) => [n, AGGREGATES[n] as Aggregate<unknown>]);
  }

  /** The whole state as JSON-able data: for checkpoints. `restore` resumes exactly where it was taken. */
  snapshot(): OperatorSnapshot {
    return {
      keys: [...this.keys].map(([key, k]) => ({
        key,
        maxTs: k.maxTs,
        watermark: k.watermark,
        lastSeen: k.lastSeen,
        lastEarly: k.lastEarly,
        slices: [...k.slices].map(([start, sl]) => ({ start, n: sl.n, states: structuredClone(sl.states) })),
        revisions: [...k.revisions],
        dirty: [...k.dirty],
      })),
    };
  }

  static restore(def: WindowDefinition, snap: OperatorSnapshot): WindowOperator {
    const op = new WindowOperator(def);
    for (const k of snap.keys) {
      op.keys.set(k.key, {
        maxTs: k.maxTs,
        watermark: k.watermark,
        lastSeen: k.lastSeen,
        lastEarly: k.lastEarly,
        slices: new Map(k.slices.map((sl) => [sl.start, { n: sl.n, states: structuredClone(sl.states) }])),
        revisions: new Map(k.revisions),
        dirty: new Set(k.dirty),
      });
    }
    return op;
  }

  /** A reading of `key` at event time `ts`, arriving at processing time `now`. */
  add(key: string, value: number, ts: number, now: number): Emission[] {
    let k = this.keys.get(key);
    if (k === undefined) {
      k = { maxTs: ts, watermark: ts - this.def.outOfOrderMs, lastSeen: now, slices: new Map(), revisions: new Map(), dirty: new Set(), lastEarly: now };
      this.keys.set(key, k);
    }
    k.lastSeen = now;
    const out: Emission[] = [];
    const windows = windowsOf(this.spec, ts);
    const lastWindowEnd = (windows[windows.length - 1] ?? 0) + this.spec.sizeMs;
    if (lastWindowEnd + this.def.allowedLatenessMs <= k.watermark) {
      out.push({ kind: "late", key, ts, value, reason: `event time ${ts} is beyond the allowed lateness (watermark ${k.watermark})` });
      return out;
    }
    const s = sliceStart(this.spec, ts);
    let slice = k.slices.get(s);
    if (slice === undefined) {
      slice = { n: 0, states: {} };
      for (const [name, agg] of this.aggregates) slice.states[name] = agg.init();
      k.slices.set(s, slice);
    }
    slice.n++;
    for (const [name, agg] of this.aggregates) slice.states[name] = agg.add(slice.states[name], value, ts);
    for (const w of windows) {
      // a window past its lateness is final: a reading that still counts for a later window does not touch it
      if (w + this.spec.sizeMs + this.def.allowedLatenessMs <= k.watermark) continue;
      if (w + this.spec.sizeMs <= k.watermark) {
        // the window fired already: a late reading within the allowed lateness fires it again
        const revision = (k.revisions.get(w) ?? 0) + 1;
        k.revisions.set(w, revision);
        out.push(this.result("revision", key, k, w, revision));
      } else {
        k.dirty.add(w);
      }
    }
    if (ts > k.maxTs) {
      k.maxTs = ts;
      out.push(...this.advanceWatermark(key, k, ts - this.def.outOfOrderMs));
    }
    return out;
  }

  /** Processing time passed: early firings, and keys silent for idleCloseMs have their open windows closed. */
  tick(now: number): Emission[] {
    const out: Emission[] = [];
    for (const [key, k] of this.keys) {
      if (now - k.lastSeen >= this.def.idleCloseMs) {
        out.push(...this.advanceWatermark(key, k, k.maxTs + this.spec.sizeMs));
      } else if (this.def.emit.earlyEveryMs !== undefined && now - k.lastEarly >= this.def.emit.earlyEveryMs) {
        k.lastEarly = now;
        for (const w of [...k.dirty].sort((a, b) => a - b)) out.push(this.result("early", key, k, w, 0));
        k.dirty.clear();
      }
      if (k.slices.size === 0 && now - k.lastSeen >= this.def.idleCloseMs + this.def.allowedLatenessMs) this.keys.delete(key);
    }
    return out;
  }

  private advanceWatermark(key: string, k: KeyState, watermark: number): Emission[] {
    const previous = k.watermark;
    if (watermark <= previous) return [];
    k.watermark = watermark;
    const out: Emission[] = [];
    // every window with data whose end the watermark crossed now fires, once (the watermark only advances)
    const size = this.spec.sizeMs;
    const candidates = new Set<number>();
    for (const s of k.slices.keys()) for (const w of windowsOf(this.spec, s)) if (w + size > previous && w + size <= watermark) candidates.add(w);
    for (const w of [...candidates].sort((a, b) => a - b)) {
      k.dirty.delete(w);
      out.push(this.result("final", key, k, w, 0));
    }
    // what can no longer change is forgotten: a slice once every window holding it is past the lateness
    const lateness = this.def.allowedLatenessMs;
    for (const s of [...k.slices.keys()]) if ((windowsOf(this.spec, s).at(-1) ?? s) + size + lateness <= watermark) k.slices.delete(s);
    for (const w of [...k.revisions.keys()]) if (w + size + lateness <= watermark) k.revisions.delete(w);
    return out;
  }

  private result(kind: "final" | "early" | "revision", key: string, k: KeyState, windowStart: number, revision: number): Emission {
    const windowEnd = windowStart + this.spec.sizeMs;
    const results: Partial<Record<AggregateName, number | null>> = {};
    let count = 0;
    const parts = slicesOf(this.spec, windowStart).flatMap((s) => {
      const slice = k.slices.get(s);
      return slice === undefined ? [] : [slice];
    });
    for (const p of parts) count += p.n;
    for (const [name, agg] of this.aggregates) {
      const merged = parts.reduce((acc, p) => agg.merge(acc, p.states[name]), agg.init());
      results[name] = agg.result(merged, { start: windowStart, end: windowEnd });
    }
    return { kind, key, windowStart, windowEnd, revision, results, count };
  }
}
