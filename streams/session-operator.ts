import { InvalidInputError } from "../fabric/core/index.js";
import type { Accumulator, States } from "./accumulator.js";
import type { WindowDefinition } from "./definition.js";
import { clockOf, KeyedOperator, type Emission, type KeyClock, type PartialWindow, type WindowResult } from "./keyed-operator.js";
import type { Operator } from "./operator.js";

interface Session {
  /** Event times of its earliest and latest reading: the window is [start, last + gapMs). */
  start: number;
  last: number;
  acc: Accumulator;
  /** How many times it fired (final, then revisions): the revision of its next firing. */
  fired: number;
  /** Readings since its last firing or early result. */
  dirty: boolean;
}

interface SessionKey extends KeyClock {
  /** Disjoint, by start. */
  sessions: Session[];
}

/** The SessionOperator's state as data (see snapshot/restore). */
export interface SessionSnapshot {
  kind: "session";
  keys: (KeyClock & { key: string; sessions: { start: number; last: number; n: number; states: States; fired: number; dirty: boolean }[] })[];
}

/**
 * Session windows, per key: a session is a run of readings less than gapMs apart (in event time), its window
 * [first reading, last reading + gapMs). It fires (final, revision 0) when the key's watermark reaches its end.
 * An out-of-order reading can extend a session, or bridge the gap between two and merge them. A reading within
 * the allowed lateness that changes a fired session fires it again as a revision (previous + 1; of merged
 * sessions, the greatest previous + 1), at once if the session stays closed, when it closes again if the reading
 * extended it past the watermark. Beyond the lateness a reading is `late`; sessions past it are forgotten, and a
 * reading near one starts a session of its own.
 *
 * A revision carries the session as it is now: windowStart is its earliest reading, so a reading before the
 * start, or a merge with an earlier session, moves it. Consumers key sessions by (key, windowStart) and take a
 * result as replacing every earlier session of the key that overlaps [windowStart, windowEnd): sessions of a key
 * are disjoint, so those are the ones merged into it.
 */
export class SessionOperator extends KeyedOperator<SessionKey> implements Operator {
  private readonly gapMs: number;

  constructor(def: WindowDefinition) {
    super(def);
    if (def.window.kind !== "session") throw new Error("SessionOperator runs session windows: createOperator picks WindowOperator for the others");
    this.gapMs = def.window.gapMs;
  }

  snapshot(): SessionSnapshot {
    return {
      kind: "session",
      keys: [...this.keys].map(([key, k]) => ({
        key,
        ...clockOf(k),
        sessions: k.sessions.map((s) => ({ start: s.start, last: s.last, n: s.acc.n, states: structuredClone(s.acc.states), fired: s.fired, dirty: s.dirty })),
      })),
    };
  }

  static restore(def: WindowDefinition, snap: SessionSnapshot): SessionOperator {
    const op = new SessionOperator(def);
    for (const k of snap.keys) {
      const sessions = k.sessions.map((s) => ({ start: s.start, last: s.last, acc: { n: s.n, states: structuredClone(s.states) }, fired: s.fired, dirty: s.dirty }));
      op.keys.set(k.key, { ...clockOf(k), sessions });
    }
    return op;
  }

  add(key: string, value: number, ts: number, now: number): Emission[] {
    const k = this.touch(key, ts, now);
    const gap = this.gapMs;
    // the sessions the reading belongs to: two when it bridges the gap between them
    const touched = k.sessions.filter((s) => s.start - gap < ts && ts < s.last + gap);
    const end = Math.max(ts, ...touched.map((s) => s.last)) + gap;
    if (end + this.def.allowedLatenessMs <= k.watermark) return [this.late(key, k, ts, value)];
    const session = (touched.length === 1 ? touched[0] : undefined) ?? this.join(k, touched, ts);
    session.start = Math.min(session.start, ts);
    session.last = Math.max(session.last, ts);
    session.dirty = true;
    this.aggregation.add(session.acc, value, ts);
    const out: Emission[] = [];
    // a fired session that stays closed (or a new one behind the watermark, within the lateness) fires now
    if (end <= k.watermark) out.push(this.fire(key, session));
    out.push(...this.progress(key, k, ts));
    return out;
  }

  addPartial(_key: string, _partial: PartialWindow, _now: number): never {
    throw new InvalidInputError(`window ${this.def.name}: partial input is for tumbling and hopping windows, not session windows`);
  }

  /** A session in place of `parts` (none: a new one at `ts`), keeping the firings of the one that fired most. */
  private join(k: SessionKey, parts: Session[], ts: number): Session {
    const s: Session = {
      start: Math.min(ts, ...parts.map((p) => p.start)),
      last: Math.max(ts, ...parts.map((p) => p.last)),
      acc: this.aggregation.merge(parts.map((p) => p.acc)),
      fired: Math.max(0, ...parts.map((p) => p.fired)),
      dirty: true,
    };
    k.sessions = [...k.sessions.filter((x) => !parts.includes(x)), s].sort((a, b) => a.start - b.start);
    return s;
  }

  private fire(key: string, s: Session): WindowResult {
    const revision = s.fired++;
    s.dirty = false;
    return this.result(revision === 0 ? "final" : "revision", key, s.start, s.last + this.gapMs, revision, s.acc);
  }

  protected create(clock: KeyClock): SessionKey {
    return { ...clock, sessions: [] };
  }

  protected early(key: string, k: SessionKey): WindowResult[] {
    const out: WindowResult[] = [];
    for (const s of k.sessions) {
      if (!s.dirty) continue;
      s.dirty = false;
      out.push(this.result("early", key, s.start, s.last + this.gapMs, 0, s.acc));
    }
    return out;
  }

  /** Every session of a silent key closes. */
  protected idleWatermark(k: SessionKey): number {
    return k.maxTs + this.gapMs;
  }

  protected advance(key: string, k: SessionKey, watermark: number): WindowResult[] {
    const previous = k.watermark;
    if (watermark <= previous) return [];
    k.watermark = watermark;
    const gap = this.gapMs;
    const out = k.sessions.filter((s) => s.last + gap > previous && s.last + gap <= watermark).map((s) => this.fire(key, s));
    k.sessions = k.sessions.filter((s) => s.last + gap + this.def.allowedLatenessMs > watermark);
    return out;
  }
}
