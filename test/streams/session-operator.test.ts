import { describe, expect, it } from "vitest";
import { InvalidInputError, parseInput } from "../../fabric/core/index.js";
import { createOperator, restoreOperator, SessionOperator, WindowOperator, windowDefinitionSchema } from "../../streams/index.js";
import { definition, expectResumes, ofKind, rng, run, type Step } from "./operator-steps.js";

const GAP = 10_000;
const T = 1_700_000_000_000;

function sessions(input: { outOfOrderMs: number; allowedLatenessMs?: number; idleCloseMs?: number; emit?: { earlyEveryMs?: number } }): SessionOperator {
  const op = createOperator(definition({ window: { kind: "session", gapMs: GAP }, aggregates: ["count", "sum", "min", "max"], ...input }));
  expect(op).toBeInstanceOf(SessionOperator);
  return op as SessionOperator;
}

/** Sessions computed directly: readings sorted by time, split where consecutive ones are gapMs or more apart. */
function sessionize(readings: { ts: number; value: number }[], gap: number): { start: number; end: number; count: number; sum: number; min: number; max: number }[] {
  const sorted = [...readings].sort((a, b) => a.ts - b.ts);
  const groups: { ts: number; value: number }[][] = [];
  for (const r of sorted) {
    const current = groups.at(-1);
    const prev = current?.at(-1);
    if (current !== undefined && prev !== undefined && r.ts - prev.ts < gap) current.push(r);
    else groups.push([r]);
  }
  return groups.map((g) => {
    const values = g.map((r) => r.value);
    return { start: g[0]?.ts ?? 0, end: (g.at(-1)?.ts ?? 0) + gap, count: g.length, sum: values.reduce((a, b) => a + b, 0), min: Math.min(...values), max: Math.max(...values) };
  });
}

describe("session windows", () => {
  it("groups readings less than gapMs apart, fires each session when the key's watermark reaches its end", () => {
    const op = sessions({ outOfOrderMs: 0 });
    const out = run(op, [
      { key: "k", value: 3, ts: T, now: 0 },
      { key: "k", value: -1, ts: T + 4_000, now: 0 },
      { key: "k", value: 7, ts: T + 13_999, now: 0 }, // 9 999 after the previous: same session
      { key: "k", value: 2, ts: T + 23_999, now: 0 }, // exactly gapMs after: a new session, and the watermark closes the first
      { key: "k", value: 5, ts: T + 33_999, now: 0 }, // the second ends at T + 33 999
    ]);
    expect(out).toEqual([
      { kind: "final", key: "k", windowStart: T, windowEnd: T + 23_999, revision: 0, count: 3, results: { count: 3, sum: 9, min: -1, max: 7 } },
      { kind: "final", key: "k", windowStart: T + 23_999, windowEnd: T + 33_999, revision: 0, count: 1, results: { count: 1, sum: 2, min: 2, max: 2 } },
    ]);
  });

  it("out-of-order readings extend sessions and bridge two into one: results equal sessions computed directly", () => {
    const r = rng(7);
    const outOfOrderMs = 30_000;
    const op = sessions({ outOfOrderMs });
    const keys = ["a", "b", "c"];
    const readings = keys.flatMap((key) => {
      let ts = T;
      return Array.from({ length: 400 }, () => {
        // mostly close together, sometimes a pause longer than the gap
        ts += r() < 0.1 ? GAP + Math.floor(r() * 3 * GAP) : Math.floor(r() * GAP * 0.8);
        return { key, ts, value: Math.round(r() * 200) - 100 };
      });
    });
    // arrival order: event time disturbed by up to outOfOrderMs, so no reading is late, but many arrive before
    // an earlier one that extends (or joins) their session
    const arrival = readings.map((x) => ({ x, at: x.ts + r() * outOfOrderMs })).sort((a, b) => a.at - b.at);
    const out = arrival.flatMap(({ x }, i) => op.add(x.key, x.value, x.ts, i));
    out.push(...op.tick(arrival.length + 60_000)); // idle: every session closes
    expect(out.filter((e) => e.kind !== "final")).toEqual([]);
    let outOfOrder = 0;
    for (const key of keys) {
      const mine = readings.filter((x) => x.key === key);
      const expected = sessionize(mine, GAP);
      const got = ofKind(out, "final").filter((e) => e.key === key);
      expect(got.map((e) => ({ start: e.windowStart, end: e.windowEnd, count: e.count, sum: e.results.sum, min: e.results.min, max: e.results.max }))).toEqual(expected);
      // the input did exercise out-of-order arrival: readings after a later one of their key
      outOfOrder += arrival.filter(({ x }, i) => x.key === key && arrival.slice(0, i).some((p) => p.x.key === key && p.x.ts > x.ts)).length;
    }
    expect(outOfOrder).toBeGreaterThan(100);
  });

  it("merges two sessions when an out-of-order reading falls in the gap between them", () => {
    const op = sessions({ outOfOrderMs: 60_000 });
    run(op, [
      { key: "k", value: 1, ts: T, now: 0 },
      { key: "k", value: 2, ts: T + 15_000, now: 0 }, // its own session: 15 000 ≥ gap
    ]);
    expect(op.add("k", 3, T + 8_000, 0)).toEqual([]); // within the gap of both: one session now, still open
    expect(op.tick(60_000)).toEqual([{ kind: "final", key: "k", windowStart: T, windowEnd: T + 25_000, revision: 0, count: 3, results: { count: 3, sum: 6, min: 1, max: 3 } }]);
  });

  it("re-fires a fired session as a revision for a late reading within the lateness (extending, merging), and routes later ones as late", () => {
    const op = sessions({ outOfOrderMs: 0, allowedLatenessMs: 50_000 });
    const fired = run(op, [
      { key: "k", value: 1, ts: T, now: 0 },
      { key: "k", value: 2, ts: T + 5_000, now: 0 },
      { key: "k", value: 4, ts: T + 18_000, now: 0 }, // 13 000 after: a second session
      { key: "k", value: 8, ts: T + 60_000, now: 0 }, // watermark T + 60 000: both fire
    ]);
    expect(fired.map((e) => e.kind === "final" && [e.windowStart - T, e.windowEnd - T, e.count])).toEqual([
      [0, 15_000, 2],
      [18_000, 28_000, 1],
    ]);
    // later than its end, within the lateness: the first session grows, and fires again at once
    expect(op.add("k", 16, T + 3_000, 0)).toEqual([{ kind: "revision", key: "k", windowStart: T, windowEnd: T + 15_000, revision: 1, count: 3, results: { count: 3, sum: 19, min: 1, max: 16 } }]);
    // before its start: the start moves (the revision carries the new one)
    expect(op.add("k", -5, T - 2_000, 0)).toMatchObject([{ kind: "revision", windowStart: T - 2_000, windowEnd: T + 15_000, revision: 2, count: 4 }]);
    // in the gap between both: one session, revision max(2, 0) + 1
    expect(op.add("k", 32, T + 11_000, 0)).toEqual([
      { kind: "revision", key: "k", windowStart: T - 2_000, windowEnd: T + 28_000, revision: 3, count: 6, results: { count: 6, sum: 50, min: -5, max: 32 } },
    ]);
    // a reading of a session of its own that would end 50 000 or more behind the watermark: late
    expect(op.add("k", 64, T - 15_000, 0)).toMatchObject([{ kind: "late", key: "k", ts: T - 15_000, value: 64 }]);
  });

  it("a consumer that keys sessions by start, a result replacing those it overlaps, ends with the sessions computed directly", () => {
    const r = rng(3);
    const op = sessions({ outOfOrderMs: 2_000, allowedLatenessMs: 600_000 });
    let ts = T;
    const readings = Array.from({ length: 1_500 }, () => {
      ts += r() < 0.15 ? GAP + Math.floor(r() * 2 * GAP) : Math.floor(r() * GAP * 0.7);
      // a quarter arrive up to a minute late: they extend, bridge and re-fire sessions
      return { ts: r() < 0.25 ? ts - Math.floor(r() * 60_000) : ts, value: Math.round(r() * 50) };
    });
    const out = readings.flatMap((x, i) => op.add("k", x.value, x.ts, i));
    out.push(...op.tick(readings.length + 60_000));
    const view = new Map<number, { start: number; end: number; count: number; sum: number | null | undefined }>();
    for (const e of out) {
      if (e.kind === "late" || e.kind === "early") continue;
      for (const [start, s] of view) if (s.start < e.windowEnd && e.windowStart < s.end) view.delete(start);
      view.set(e.windowStart, { start: e.windowStart, end: e.windowEnd, count: e.count, sum: e.results.sum });
    }
    expect(out.filter((e) => e.kind === "late")).toEqual([]);
    expect(ofKind(out, "revision").length).toBeGreaterThan(20);
    expect([...view.values()].sort((a, b) => a.start - b.start)).toEqual(sessionize(readings, GAP).map(({ start, end, count, sum }) => ({ start, end, count, sum })));
  });

  it("a late reading that extends a fired session past the watermark re-opens it: the revision comes when it closes again", () => {
    const op = sessions({ outOfOrderMs: 5_000, allowedLatenessMs: 60_000 });
    run(op, [{ key: "k", value: 1, ts: T, now: 0 }]);
    expect(op.add("k", 1, T + 20_000, 0)).toMatchObject([{ kind: "final", windowStart: T, windowEnd: T + 10_000, revision: 0, count: 1 }]);
    expect(op.add("k", 2, T + 8_000, 0)).toEqual([]); // session now ends at T + 18 000 > watermark T + 15 000
    expect(op.add("k", 4, T + 28_500, 0)).toMatchObject([{ kind: "revision", windowStart: T, windowEnd: T + 18_000, revision: 1, count: 2, results: { sum: 3 } }]);
  });

  it("closes the sessions of a silent key on processing time, after early results at the early interval, then forgets it", () => {
    const op = sessions({ outOfOrderMs: 0, idleCloseMs: 30_000, emit: { earlyEveryMs: 5_000 } });
    op.add("q", 1, T + 1_000, 0);
    op.add("q", 2, T + 3_000, 1_000);
    expect(op.tick(5_000)).toEqual([{ kind: "early", key: "q", windowStart: T + 1_000, windowEnd: T + 13_000, revision: 0, count: 2, results: { count: 2, sum: 3, min: 1, max: 2 } }]);
    expect(op.tick(10_000)).toEqual([]); // nothing new since
    expect(op.tick(30_999)).toEqual([]);
    expect(op.tick(31_000)).toMatchObject([{ kind: "final", key: "q", windowStart: T + 1_000, windowEnd: T + 13_000, count: 2 }]);
    expect(op.snapshot().keys).toEqual([]);
  });

  it("refuses empty windows and partial input for session windows, naming the field", () => {
    const base = { name: "s", window: { kind: "session", gapMs: 1_000 }, aggregates: ["count"] };
    expect(() => parseInput(windowDefinitionSchema, { ...base, emit: { emptyWindows: true } }, "window")).toThrow(/window\.emit\.emptyWindows/);
    expect(() => parseInput(windowDefinitionSchema, { ...base, source: { partials: true } }, "window")).toThrow(/window\.source\.partials/);
    const op = sessions({ outOfOrderMs: 0 });
    expect(() => op.addPartial("k", { start: 0, end: 1_000, count: 0, states: {} }, 0)).toThrow(InvalidInputError);
  });

  it("createOperator picks the operator of the window kind; a checkpoint of another kind is refused", () => {
    const session = definition({ window: { kind: "session", gapMs: GAP }, aggregates: ["count"] });
    const tumbling = definition({ window: { kind: "tumbling", sizeMs: GAP }, aggregates: ["count"] });
    expect(createOperator(tumbling)).toBeInstanceOf(WindowOperator);
    expect(() => restoreOperator(tumbling, createOperator(session).snapshot())).toThrow(InvalidInputError);
    expect(() => restoreOperator(session, createOperator(tumbling).snapshot())).toThrow(InvalidInputError);
  });

  it("a run restored from a snapshot emits exactly what an uninterrupted run does (out-of-order, late, early, idle)", () => {
    const def = definition({
      window: { kind: "session", gapMs: 3_000 },
      aggregates: ["count", "sum", "stddev", "p90", "first", "last", "twa"],
      outOfOrderMs: 2_000,
      allowedLatenessMs: 8_000,
      idleCloseMs: 20_000,
      emit: { earlyEveryMs: 4_000, partials: true },
    });
    const r = rng(11);
    const steps: Step[] = [];
    let ts = T;
    for (let i = 0; i < 1_200; i++) {
      ts += r() < 0.05 ? 4_000 + Math.floor(r() * 6_000) : Math.floor(r() * 1_500);
      // out of order: mostly within the lateness, some beyond
      const back = r() < 0.2 ? Math.floor(r() * 12_000) : r() < 0.03 ? Math.floor(r() * 40_000) : 0;
      const now = i * 50 + (i > 600 ? 25_000 : 0); // a pause after reading 600: every key idle
      steps.push({ key: `k${i % 5}`, value: Math.round(r() * 100) - 50, ts: ts - back, now });
      if (i % 40 === 0 || i === 600) steps.push({ tick: i === 600 ? now + 25_000 : now });
    }
    steps.push({ tick: 10_000_000 });
    const expected = expectResumes(def, steps);
    for (const kind of ["final", "revision", "early"] as const) expect(ofKind(expected, kind).length).toBeGreaterThan(10);
    expect(expected.filter((e) => e.kind === "late").length).toBeGreaterThan(10);
    expect(ofKind(expected, "final").every((e) => e.states?.p90 !== undefined)).toBe(true);
  });
});
