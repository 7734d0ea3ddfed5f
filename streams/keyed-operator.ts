import { Aggregation, type Accumulator, type Results, type States } from "./accumulator.js";
import type { WindowDefinition } from "./definition.js";

/** A window's result: final, early (of a window still open), or a revision after late input. */
export interface WindowResult {
  kind: "final" | "early" | "revision";
  key: string;
  windowStart: number;
  windowEnd: number;
  /** 0 for the first final result, then 1, 2… for re-firings after late input; 0 for early results. */
  revision: number;
  results: Results;
  count: number;
  /** true on a window that holds no readings (emit.emptyWindows; or only empty partials); absent otherwise. */
  empty?: boolean;
  /** emit.partials: each aggregate's state, merged over the window, for a definition with source.partials. */
  states?: States;
}

/** A window result of another definition's worker (its emit.partials), the input of one with source.partials. */
export interface PartialWindow {
  start: number;
  end: number;
  count: number;
  states: Record<string, unknown>;
}

/** Input too late to count. `value` is the reading's; for a partial, its count, the partial itself in `partial`. */
export interface LateInput {
  kind: "late";
  key: string;
  ts: number;
  value: number;
  reason: string;
  partial?: PartialWindow;
}

export type Emission = WindowResult | LateInput;

/** Per key: event-time progress, and processing time of its latest input and early firing. */
export interface KeyClock {
  /** Latest event time seen, and the watermark that trails it. */
  maxTs: number;
  watermark: number;
  lastSeen: number;
  lastEarly: number;
}

export function clockOf(k: KeyClock): KeyClock {
  return { maxTs: k.maxTs, watermark: k.watermark, lastSeen: k.lastSeen, lastEarly: k.lastEarly };
}

/**
 * What every window kind shares: keys with their own watermark (the latest event time less the bounded
 * out-of-orderness, so one device's skew or replay never makes another's data late), results with the
 * definition's emit options, and processing-time work (early firings; the close of keys that went silent,
 * which are forgotten once nothing can change for them any more).
 */
export abstract class KeyedOperator<K extends KeyClock> {
  protected readonly keys = new Map<string, K>();
  protected readonly aggregation: Aggregation;
  /** A key silent this long (processing time) is forgotten. */
  private readonly keepMs: number;

  protected constructor(protected readonly def: WindowDefinition) {
    this.aggregation = new Aggregation(def.aggregates);
    this.keepMs = Math.max(def.idleCloseMs + def.allowedLatenessMs, def.emit.emptyWindows ? def.emit.emptyForMs : 0);
  }

  /** A new key's state, from its clock. */
  protected abstract create(clock: KeyClock): K;
  /** Moves the key's watermark up to `watermark` (never back); what that closes fires. */
  protected abstract advance(key: string, k: K, watermark: number): WindowResult[];
  /** Early results of the key's open windows that have new data since the last ones. */
  protected abstract early(key: string, k: K): WindowResult[];
  /** The watermark of a key silent (processing time) for `silentMs` ≥ idleCloseMs: its open windows close. */
  protected abstract idleWatermark(k: K, silentMs: number): number;

  /** Processing time passed: early firings, and keys silent for idleCloseMs have their open windows closed. */
  tick(now: number): Emission[] {
    const out: Emission[] = [];
    const every = this.def.emit.earlyEveryMs;
    for (const [key, k] of this.keys) {
      const silent = now - k.lastSeen;
      if (silent >= this.def.idleCloseMs) {
        out.push(...this.advance(key, k, this.idleWatermark(k, silent)));
      } else if (every !== undefined && now - k.lastEarly >= every) {
        k.lastEarly = now;
        out.push(...this.early(key, k));
      }
      if (silent >= this.keepMs) this.keys.delete(key);
    }
    return out;
  }

  /** The key's state for input at event time `ts` (a new key's watermark starts there), seen at `now`. */
  protected touch(key: string, ts: number, now: number): K {
    let k = this.keys.get(key);
    if (k === undefined) {
      k = this.create({ maxTs: ts, watermark: ts - this.def.outOfOrderMs, lastSeen: now, lastEarly: now });
      this.keys.set(key, k);
    }
    k.lastSeen = now;
    return k;
  }

  /** After accepted input at `ts`: the watermark follows a new latest event time (`advance` still sees the previous one). */
  protected progress(key: string, k: K, ts: number): WindowResult[] {
    if (ts <= k.maxTs) return [];
    const out = this.advance(key, k, ts - this.def.outOfOrderMs);
    k.maxTs = ts;
    return out;
  }

  protected late(key: string, k: K, ts: number, value: number, partial?: PartialWindow): LateInput {
    const reason = `event time ${ts} is beyond the allowed lateness (watermark ${k.watermark})`;
    return partial === undefined ? { kind: "late", key, ts, value, reason } : { kind: "late", key, ts, value, reason, partial };
  }

  protected result(kind: WindowResult["kind"], key: string, windowStart: number, windowEnd: number, revision: number, acc: Accumulator): WindowResult {
    const out: WindowResult = { kind, key, windowStart, windowEnd, revision, results: this.aggregation.results(acc, { start: windowStart, end: windowEnd }), count: acc.n };
    if (acc.n === 0) out.empty = true;
    if (this.def.emit.partials) out.states = structuredClone(acc.states);
    return out;
  }
}
