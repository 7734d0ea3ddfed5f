import { z } from "zod";
import { InvalidInputError, parseInput } from "../fabric/core/index.js";
import type { Accumulator, States } from "./accumulator.js";
import type { WindowDefinition } from "./definition.js";
import { clockOf, KeyedOperator, type Emission, type KeyClock, type PartialWindow, type WindowResult } from "./keyed-operator.js";
import { SessionOperator, type SessionSnapshot } from "./session-operator.js";
import { crossesWindowEnd, firstWindowEnd, sliceMs, sliceStart, slicesOf, windowsEndingIn, windowsOf, type SlicedWindowSpec } from "./windows.js";

export type { Emission, LateInput, PartialWindow, WindowResult } from "./keyed-operator.js";

/**
 * The payload of a partial (another definition's result with emit.partials): what a definition with
 * source.partials reads. Other fields of a result message (window, key, kind, results…) are allowed and ignored.
 */
export const partialSchema = z
  .object({
    start: z.number().int(),
    end: z.number().int(),
    count: z.number().int().min(0),
    states: z.record(z.string(), z.unknown()),
  })
  .refine((p) => p.end > p.start, { message: "end must be after start", path: ["end"] });

/** The operator of a definition, whichever its window kind (createOperator, restoreOperator). */
export interface Operator {
  /** A reading of `key` at event time `ts`, arriving at processing time `now`. */
  add(key: string, value: number, ts: number, now: number): Emission[];
  /** A partial (source.partials); throws InvalidInputError for input that cannot be merged, state unchanged. */
  addPartial(key: string, partial: PartialWindow, now: number): Emission[];
  /** Processing time passed: early firings, idle close, empty windows of silent keys. */
  tick(now: number): Emission[];
  /** The whole state as JSON-able data, for checkpoints: restoreOperator resumes exactly where it was taken. */
  snapshot(): OperatorState;
}

export type OperatorState = OperatorSnapshot | SessionSnapshot;

export function createOperator(def: WindowDefinition): Operator {
  return def.window.kind === "session" ? new SessionOperator(def) : new WindowOperator(def);
}

/** Resumes from a snapshot; one of another window kind than the definition's is refused (InvalidInputError). */
export function restoreOperator(def: WindowDefinition, snap: OperatorState): Operator {
  if (("kind" in snap) !== (def.window.kind === "session")) throw new InvalidInputError(`the checkpoint of window ${def.name} is not of a ${def.window.kind} window`);
  return "kind" in snap ? SessionOperator.restore(def, snap) : WindowOperator.restore(def, snap);
}

/** The WindowOperator's state as data (see snapshot/restore). */
export interface OperatorSnapshot {
  keys: (KeyClock & {
    key: string;
    since: number;
    slices: { start: number; n: number; states: States }[];
    revisions: [number, number][];
    dirty: number[];
  })[];
}

interface KeyState extends KeyClock {
  /** Event time of the key's first input: its empty windows are those after it. */
  since: number;
  slices: Map<number, Accumulator>;
  /** Windows re-fired after late input: their latest revision. */
  revisions: Map<number, number>;
  /** Open windows with data since the last early firing. */
  dirty: Set<number>;
}

/**
 * The windowed aggregation of a tumbling or hopping definition, in memory and deterministic (time comes in as
 * arguments): slice accumulators per key, final results when the key's watermark passes a window's end,
 * revisions for input within the allowed lateness, `late` emissions beyond it, and (emit.emptyWindows) count-0
 * results for windows without readings. Input is readings, or partials of another definition (addPartial).
 */
export class WindowOperator extends KeyedOperator<KeyState> implements Operator {
  private readonly spec: SlicedWindowSpec;

  constructor(def: WindowDefinition) {
    super(def);
    if (def.window.kind === "session") throw new Error("WindowOperator runs tumbling and hopping windows: createOperator picks SessionOperator for session windows");
    this.spec = def.window;
  }

  snapshot(): OperatorSnapshot {
    return {
      keys: [...this.keys].map(([key, k]) => ({
        key,
        ...clockOf(k),
        since: k.since,
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
        ...clockOf(k),
        since: k.since,
        slices: new Map(k.slices.map((sl) => [sl.start, { n: sl.n, states: structuredClone(sl.states) }])),
        revisions: new Map(k.revisions),
        dirty: new Set(k.dirty),
      });
    }
    return op;
  }

  add(key: string, value: number, ts: number, now: number): Emission[] {
    // the common case, without the general path's allocations: every window holding the reading is still open
    // (so it is neither late nor a revision) and no early firing needs to know which windows it touched
    const k = this.keys.get(key);
    if (k !== undefined && this.def.emit.earlyEveryMs === undefined && firstWindowEnd(this.spec, ts) > k.watermark) {
      k.lastSeen = now;
      const s = sliceStart(this.spec, ts);
      let slice = k.slices.get(s);
      if (slice === undefined) {
        slice = this.aggregation.empty();
        k.slices.set(s, slice);
      }
      this.aggregation.add(slice, value, ts);
      return this.progress(key, k, ts);
    }
    return this.accept(
      key,
      ts,
      now,
      (slice) => {
        this.aggregation.add(slice, value, ts);
        return slice;
      },
      (k) => this.late(key, k, ts, value),
    );
  }

  /**
   * A partial result of another definition, merged into the slice holding its [start, end); its event time is
   * end - 1 (for the watermark and lateness). Throws InvalidInputError, leaving the state as it was, when it
   * does not fit in one slice of this definition's windows or lacks (or holds a malformed) state of one of its
   * aggregates.
   */
  addPartial(key: string, partial: PartialWindow, now: number): Emission[] {
    const p = parseInput(partialSchema, partial, "partial");
    const start = sliceStart(this.spec, p.start);
    if (sliceStart(this.spec, p.end - 1) !== start) {
      throw new InvalidInputError(`invalid partial: [${p.start}, ${p.end}) does not fit in one slice of window ${this.def.name} ([${start}, ${start + sliceMs(this.spec)}))`);
    }
    const acc = this.aggregation.parse(p.count, p.states);
    return this.accept(
      key,
      p.end - 1,
      now,
      (slice) => this.aggregation.merge([slice, acc]),
      (k) => this.late(key, k, p.end - 1, p.count, p),
    );
  }

  /** Input at event time `ts`: `fold` puts it into its slice (returning the slice), unless it is too late. */
  private accept(key: string, ts: number, now: number, fold: (slice: Accumulator) => Accumulator, late: (k: KeyState) => Emission): Emission[] {
    const k = this.touch(key, ts, now);
    const size = this.spec.sizeMs;
    const lateness = this.def.allowedLatenessMs;
    const windows = windowsOf(this.spec, ts);
    if ((windows.at(-1) ?? 0) + size + lateness <= k.watermark) return [late(k)];
    const s = sliceStart(this.spec, ts);
    k.slices.set(s, fold(k.slices.get(s) ?? this.aggregation.empty()));
    const out: Emission[] = [];
    for (const w of windows) {
      // a window past its lateness is final: input that still counts for a later window does not touch it
      if (w + size + lateness <= k.watermark) continue;
      if (w + size <= k.watermark) {
        // the window fired already: input within the allowed lateness fires it again
        const revision = (k.revisions.get(w) ?? 0) + 1;
        k.revisions.set(w, revision);
        out.push(this.window("revision", key, k, w, revision));
      } else {
        k.dirty.add(w);
      }
    }
    out.push(...this.progress(key, k, ts));
    return out;
  }

  protected create(clock: KeyClock): KeyState {
    return { ...clock, since: clock.maxTs, slices: new Map(), revisions: new Map(), dirty: new Set() };
  }

  protected early(key: string, k: KeyState): WindowResult[] {
    const out = [...k.dirty].sort((a, b) => a - b).map((w) => this.window("early", key, k, w, 0));
    k.dirty.clear();
    return out;
  }

  /**
   * A silent key's open windows close (the watermark passes every window holding its latest reading). With
   * emit.emptyWindows its event time is then taken to run on with processing time, as
   * maxTs + silence - outOfOrderMs (the watermark a reading would have brought), up to a silence of emptyForMs,
   * so its count-0 windows keep coming until then; then it is forgotten.
   */
  protected idleWatermark(k: KeyState, silentMs: number): number {
    const closed = k.maxTs + this.spec.sizeMs;
    if (!this.def.emit.emptyWindows) return closed;
    return Math.max(closed, k.maxTs + Math.min(silentMs, this.def.emit.emptyForMs) - this.def.outOfOrderMs);
  }

  protected advance(key: string, k: KeyState, watermark: number): WindowResult[] {
    const previous = k.watermark;
    if (watermark <= previous) return [];
    k.watermark = watermark;
    // the common case: no window end (nor end + lateness) passed, so nothing fires and nothing is forgotten
    const lateness = this.def.allowedLatenessMs;
    if (!crossesWindowEnd(this.spec, previous, watermark) && !crossesWindowEnd(this.spec, previous - lateness, watermark - lateness)) return [];
    // every window with data whose end the watermark crossed now fires, once (the watermark only advances)
    const size = this.spec.sizeMs;
    const closing = new Set<number>();
    for (const s of k.slices.keys()) for (const w of windowsOf(this.spec, s)) if (w + size > previous && w + size <= watermark) closing.add(w);
    if (this.def.emit.emptyWindows) {
      // and the windows without data after the key's first input, up to emptyForMs after its latest one
      // (k.maxTs: the latest before this advance), so a silence, or a jump far ahead, brings at most
      // emptyForMs / hop of them; the others stay unreported
      const upTo = Math.min(watermark, k.maxTs + this.def.emit.emptyForMs);
      for (const w of windowsEndingIn(this.spec, Math.max(previous, k.since), upTo)) closing.add(w);
    }
    const out = [...closing]
      .sort((a, b) => a - b)
      .map((w) => {
        k.dirty.delete(w);
        return this.window("final", key, k, w, 0);
      });
    // what can no longer change is forgotten: a slice once every window holding it is past the lateness
    for (const s of [...k.slices.keys()]) if ((windowsOf(this.spec, s).at(-1) ?? s) + size + lateness <= watermark) k.slices.delete(s);
    for (const w of [...k.revisions.keys()]) if (w + size + lateness <= watermark) k.revisions.delete(w);
    return out;
  }

  /** The window starting at `windowStart`: its slices merged (none: an empty window). */
  private window(kind: WindowResult["kind"], key: string, k: KeyState, windowStart: number, revision: number): WindowResult {
    const parts = slicesOf(this.spec, windowStart).flatMap((s) => {
      const slice = k.slices.get(s);
      return slice === undefined ? [] : [slice];
    });
    return this.result(kind, key, windowStart, windowStart + this.spec.sizeMs, revision, this.aggregation.merge(parts));
  }
}
