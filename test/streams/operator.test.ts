import { describe, expect, it } from "vitest";
import { InvalidInputError, parseInput } from "../../fabric/core/index.js";
import {
  AGGREGATES,
  createOperator,
  partialSchema,
  SKETCH_RELATIVE_ACCURACY,
  WindowOperator,
  windowDefinitionSchema,
  type Aggregate,
  type Emission,
  type PartialWindow,
  type WindowDefinitionInput,
} from "../../streams/index.js";
import { definition, expectResumes, ofKind, rng, run, type Step } from "./operator-steps.js";

function operator(def: Partial<WindowDefinitionInput> & Pick<WindowDefinitionInput, "window" | "aggregates">): WindowOperator {
  return new WindowOperator(windowDefinitionSchema.parse({ name: "t", ...def }));
}

const finals = (e: Emission[]) => e.filter((x) => x.kind === "final");

describe("window operator", () => {
  it("fires a tumbling window once the key's watermark passes its end, with exact results", () => {
    const op = operator({ window: { kind: "tumbling", sizeMs: 10_000 }, aggregates: ["count", "sum", "min", "max", "avg"], outOfOrderMs: 2_000 });
    const out: Emission[] = [];
    for (const [ts, v] of [
      [1_000, 4],
      [5_000, -2],
      [9_000, 10],
      [11_000, 1], // watermark 9 000: [0, 10 000) still open
      [8_500, 3], // out of order, within the bound: counted
      [12_500, 7], // watermark 10 500: fires
    ] as const) {
      out.push(...op.add("s.d.t", v, ts, 0));
    }
    const f = finals(out);
    expect(f).toHaveLength(1);
    expect(f[0]).toMatchObject({ windowStart: 0, windowEnd: 10_000, revision: 0, count: 4, results: { count: 4, sum: 15, min: -2, max: 10, avg: 15 / 4 } });
  });

  it("keeps a watermark per key: one device's progress never makes another's readings late", () => {
    const op = operator({ window: { kind: "tumbling", sizeMs: 10_000 }, aggregates: ["count"], outOfOrderMs: 0 });
    op.add("a", 1, 1_000_000, 0);
    const b = op.add("b", 1, 5_000, 0); // far behind a, but b's own first reading
    expect(b.filter((e) => e.kind === "late")).toEqual([]);
    expect(finals(op.add("b", 1, 15_000, 0))).toMatchObject([{ key: "b", windowStart: 0, count: 1 }]);
  });

  it("re-fires a window with a new revision for a reading within the allowed lateness, and routes later ones as late", () => {
    const op = operator({ window: { kind: "tumbling", sizeMs: 10_000 }, aggregates: ["count", "sum"], outOfOrderMs: 0, allowedLatenessMs: 5_000 });
    op.add("k", 1, 2_000, 0);
    expect(finals(op.add("k", 1, 11_000, 0))).toMatchObject([{ windowStart: 0, count: 1 }]);
    const rev = op.add("k", 5, 9_000, 0);
    expect(rev).toMatchObject([{ kind: "revision", windowStart: 0, revision: 1, count: 2, results: { sum: 6 } }]);
    op.add("k", 1, 16_000, 0); // watermark 16 000: [0, 10 000) is past its lateness
    const late = op.add("k", 1, 3_000, 0);
    expect(late).toMatchObject([{ kind: "late", key: "k", ts: 3_000 }]);
  });

  it("closes the windows of a key that went silent, on processing time", () => {
    const op = operator({ window: { kind: "tumbling", sizeMs: 10_000 }, aggregates: ["count"], outOfOrderMs: 1_000, idleCloseMs: 30_000 });
    op.add("quiet", 1, 3_000, 100);
    expect(finals(op.tick(20_000))).toEqual([]);
    expect(finals(op.tick(30_100))).toMatchObject([{ key: "quiet", windowStart: 0, count: 1 }]);
  });

  it("emits early results of open windows at the early interval", () => {
    const op = operator({ window: { kind: "tumbling", sizeMs: 60_000 }, aggregates: ["count"], outOfOrderMs: 0, emit: { earlyEveryMs: 5_000 } });
    op.add("e", 1, 1_000, 0);
    op.add("e", 1, 2_000, 1_000);
    expect(op.tick(5_000)).toMatchObject([{ kind: "early", windowStart: 0, count: 2 }]);
    expect(op.tick(10_000)).toEqual([]); // nothing new since
  });

  it("hopping windows match sums computed directly from the readings", () => {
    const op = operator({ window: { kind: "hopping", sizeMs: 60_000, hopMs: 10_000 }, aggregates: ["sum", "count"], outOfOrderMs: 0 });
    const readings = Array.from({ length: 500 }, (_, i) => ({ ts: i * 700, value: (i % 17) - 8 }));
    const out = readings.flatMap((r) => op.add("h", r.value, r.ts, 0));
    const f = finals(out);
    expect(f.length).toBeGreaterThan(20);
    for (const e of f) {
      if (e.kind !== "final") continue;
      const inside = readings.filter((r) => r.ts >= e.windowStart && r.ts < e.windowEnd);
      expect(e.count).toBe(inside.length);
      expect(e.results.sum).toBe(inside.reduce((s, r) => s + r.value, 0));
    }
  });

  it("refuses an invalid definition with a message naming the field", () => {
    expect(() => parseInput(windowDefinitionSchema, { name: "x", window: { kind: "tumbling", sizeMs: 0 }, aggregates: ["sum"] }, "window")).toThrow(/window\.window\.sizeMs/);
    expect(() => parseInput(windowDefinitionSchema, { name: "x", window: { kind: "tumbling", sizeMs: 1_000 }, aggregates: ["median"] }, "window")).toThrow(/window\.aggregates\.0/);
  });
});

describe("operator snapshots", () => {
  it("a run restored from a snapshot (through JSON) emits exactly what an uninterrupted run does", () => {
    const def = windowDefinitionSchema.parse({
      name: "snap",
      window: { kind: "hopping", sizeMs: 30_000, hopMs: 10_000 },
      aggregates: ["count", "sum", "stddev", "p90", "last", "increase"],
      outOfOrderMs: 3_000,
      allowedLatenessMs: 10_000,
    });
    const events = Array.from({ length: 3_000 }, (_, i) => ({ key: `k${i % 7}`, ts: i * 97 - (i % 5 === 0 ? 2_500 : 0), value: ((i * 37) % 101) - 50 }));
    const whole = new WindowOperator(def);
    const expected = events.flatMap((e, i) => whole.add(e.key, e.value, e.ts, i));
    for (const cut of [1, 777, 1_500, 2_999]) {
      const first = new WindowOperator(def);
      const before = events.slice(0, cut).flatMap((e, i) => first.add(e.key, e.value, e.ts, i));
      const snap = JSON.parse(JSON.stringify(first.snapshot())) as ReturnType<WindowOperator["snapshot"]>;
      const resumed = WindowOperator.restore(def, snap);
      const after = events.slice(cut).flatMap((e, i) => resumed.add(e.key, e.value, e.ts, cut + i));
      expect([...before, ...after]).toEqual(expected);
    }
  });
});

/** Aligned to a minute. */
const T0 = 1_699_999_980_000;

describe("empty windows", () => {
  it("fires the windows without readings between a key's readings: count 0, empty, each aggregate's empty result", () => {
    const op = createOperator(definition({ window: { kind: "tumbling", sizeMs: 10_000 }, aggregates: ["count", "sum", "min", "avg", "p50", "last", "twa", "increase"], outOfOrderMs: 0, emit: { emptyWindows: true } }));
    expect(op.add("k", 4, T0 + 5_000, 0)).toEqual([]);
    const out = op.add("k", 6, T0 + 42_000, 0);
    const empty = { count: 0, sum: 0, min: null, avg: null, p50: null, last: null, twa: null, increase: null };
    expect(out).toEqual([
      { kind: "final", key: "k", windowStart: T0, windowEnd: T0 + 10_000, revision: 0, count: 1, results: { count: 1, sum: 4, min: 4, avg: 4, p50: expect.closeTo(4, 1) as number, last: 4, twa: 4, increase: 0 } },
      ...[10_000, 20_000, 30_000].map((s) => ({ kind: "final", key: "k", windowStart: T0 + s, windowEnd: T0 + s + 10_000, revision: 0, count: 0, empty: true, results: empty })),
    ]);
    expect(out[0]).not.toHaveProperty("empty");
  });

  it("hopping: every window ending after the key's first reading fires, empty or not, as computed from the readings", () => {
    const spec = { kind: "hopping", sizeMs: 20_000, hopMs: 5_000 } as const;
    const op = createOperator(definition({ window: spec, aggregates: ["count", "sum"], outOfOrderMs: 0, emit: { emptyWindows: true } }));
    const readings = [3_000, 4_000, 71_000, 90_000].map((t, i) => ({ ts: T0 + t, value: i + 1 }));
    const out = run(op, readings.map((r) => ({ key: "h", ...r, now: 0 })));
    const expected = [];
    for (let start = T0 - 15_000; start + spec.sizeMs <= T0 + 90_000; start += spec.hopMs) {
      const inside = readings.filter((r) => r.ts >= start && r.ts < start + spec.sizeMs);
      expected.push({ start, count: inside.length, sum: inside.reduce((s, r) => s + r.value, 0), empty: inside.length === 0 || undefined });
    }
    expect(expected.filter((e) => e.empty).length).toBe(10);
    expect(ofKind(out, "final").map((e) => ({ start: e.windowStart, count: e.count, sum: e.results.sum, empty: e.empty }))).toEqual(expected);
  });

  it("a silent key's count-0 windows keep coming on processing time up to emptyForMs after its last reading, then it is forgotten", () => {
    const emptyForMs = 320_000;
    const outOfOrderMs = 5_000;
    const op = createOperator(definition({ window: { kind: "tumbling", sizeMs: 60_000 }, aggregates: ["count"], outOfOrderMs, idleCloseMs: 30_000, emit: { emptyWindows: true, emptyForMs } }));
    op.add("quiet", 1, T0 + 1_000, 0);
    op.add("back", 1, T0 + 1_000, 0);
    const seen: { now: number; e: Emission }[] = [];
    for (let now = 10_000; now <= 600_000; now += 10_000) {
      // "back" reports again after 100 s, on the same clock: not late, and its window is not taken for empty
      if (now === 100_000) expect(op.add("back", 1, T0 + 101_000, now)).toEqual([]);
      for (const e of op.tick(now)) seen.push({ now, e });
    }
    const quiet = seen.filter((x) => x.e.key === "quiet");
    expect(quiet[0]).toMatchObject({ now: 30_000, e: { kind: "final", windowStart: T0, count: 1 } });
    // its event time runs on as 1 000 + silence - outOfOrderMs: a window ending at T0 + 120 000 closes 124 000 after
    expect(quiet[1]).toMatchObject({ now: 130_000, e: { kind: "final", windowStart: T0 + 60_000, count: 0, empty: true } });
    const ends: number[] = [];
    for (let end = T0 + 120_000; end <= T0 + 1_000 + emptyForMs - outOfOrderMs; end += 60_000) ends.push(end);
    expect(ends.length).toBe(4);
    expect(quiet.slice(1).map((x) => x.e.kind !== "late" && [x.e.windowEnd, x.e.count])).toEqual(ends.map((end) => [end, 0]));
    expect(quiet.length - 1).toBeLessThanOrEqual(emptyForMs / 60_000);
    expect(seen.filter((x) => x.e.key === "back").map((x) => x.e.kind !== "late" && [x.e.windowStart, x.e.count])).toEqual([
      [T0, 1],
      [T0 + 60_000, 1],
      // up to its last reading (T0 + 101 000) + 320 000 - outOfOrderMs
      ...[2, 3, 4, 5].map((i) => [T0 + i * 60_000, 0]),
    ]);
    // both forgotten 320 s after their last reading
    expect(op.snapshot().keys).toEqual([]);
    expect(op.add("quiet", 1, T0 + 2_000_000, 700_000)).toEqual([]);
  });

  it("a reading far ahead brings at most emptyForMs / hop count-0 windows, those after the previous reading", () => {
    const op = createOperator(definition({ window: { kind: "tumbling", sizeMs: 1_000 }, aggregates: ["count"], outOfOrderMs: 0, emit: { emptyWindows: true, emptyForMs: 10_000 } }));
    op.add("k", 1, T0 + 500, 0);
    const far = T0 + 1_000_000_000;
    const out = op.add("k", 1, far, 0);
    expect(out.map((e) => e.kind !== "late" && [e.windowStart - T0, e.count])).toEqual([[0, 1], ...[1, 2, 3, 4, 5, 6, 7, 8, 9].map((i) => [i * 1_000, 0])]);
    const next = op.add("k", 1, far + 5_000, 0);
    expect(next.map((e) => e.kind !== "late" && [e.windowStart - far, e.count])).toEqual([[0, 1], ...[1, 2, 3, 4].map((i) => [i * 1_000, 0])]);
  });

  it("a run with empty windows restored from a snapshot emits exactly what an uninterrupted run does", () => {
    const def = definition({
      window: { kind: "hopping", sizeMs: 4_000, hopMs: 2_000 },
      aggregates: ["count", "sum", "p50"],
      outOfOrderMs: 1_000,
      allowedLatenessMs: 3_000,
      idleCloseMs: 5_000,
      emit: { emptyWindows: true, emptyForMs: 20_000, earlyEveryMs: 1_500 },
    });
    const r = rng(5);
    const steps: Step[] = [];
    const ts = [T0, T0, T0];
    let now = 0;
    for (let i = 0; i < 1_500; i++) {
      const k = i % 3;
      // pauses in event time (empty windows), and in processing time (idle keys, some forgotten)
      const pause = r() < 0.03 ? 10_000 + Math.floor(r() * 30_000) : 0;
      ts[k] = (ts[k] ?? T0) + 300 + Math.floor(r() * 500) + pause;
      now += 100 + (pause > 0 && r() < 0.5 ? pause : 0);
      steps.push({ key: `k${k}`, value: Math.round(r() * 20) - 10, ts: (ts[k] ?? T0) - (r() < 0.1 ? Math.floor(r() * 6_000) : 0), now });
      if (i % 10 === 0) steps.push({ tick: now });
    }
    const expected = expectResumes(def, steps);
    expect(ofKind(expected, "final").filter((e) => e.empty === true).length).toBeGreaterThan(100);
    expect(ofKind(expected, "revision").length).toBeGreaterThan(10);
  });
});

describe("partials", () => {
  const aggregates = ["count", "sum", "min", "max", "avg", "stddev", "p50", "p99", "first", "last"] as const;

  it("edge partials (two sites, one key) merged at a hub equal one operator fed every reading, and the readings' own statistics", () => {
    const r = rng(42);
    const readings = Array.from({ length: 3_000 }, (_, i) => ({ ts: T0 + i * 200 + Math.floor(r() * 150), value: Math.round((r() * 80 - 30) * 100) / 100, site: r() < 0.5 ? 0 : 1 }));
    const edgeDef = definition({ window: { kind: "tumbling", sizeMs: 10_000 }, aggregates: [...aggregates], outOfOrderMs: 0, emit: { partials: true } });
    const messages = [0, 1].flatMap((site) => {
      const edge = createOperator(edgeDef);
      const out = readings.filter((x) => x.site === site).flatMap((x, i) => edge.add("s.d.t", x.value, x.ts, i));
      const finals = ofKind([...out, ...edge.tick(10_000_000)], "final");
      expect(finals.length).toBe(60);
      // as the worker publishes them
      return finals.map((e) => JSON.parse(JSON.stringify({ window: "edge", key: e.key, start: e.windowStart, end: e.windowEnd, revision: e.revision, kind: e.kind, count: e.count, ...e.results, states: e.states })) as unknown);
    });
    const hub = createOperator(definition({ window: { kind: "tumbling", sizeMs: 60_000 }, aggregates: [...aggregates], outOfOrderMs: 0, source: { partials: true } }));
    const partials = messages.map((m) => partialSchema.parse(m)).sort((a, b) => a.end - b.end);
    const hubOut = [...partials.flatMap((p, i) => hub.addPartial("s.d.t", p, i)), ...hub.tick(10_000_000)];
    const direct = createOperator(definition({ window: { kind: "tumbling", sizeMs: 60_000 }, aggregates: [...aggregates], outOfOrderMs: 0 }));
    const directOut = [...readings.flatMap((x, i) => direct.add("s.d.t", x.value, x.ts, i)), ...direct.tick(10_000_000)];
    expect(hubOut.filter((e) => e.kind !== "final")).toEqual([]);
    const got = ofKind(hubOut, "final");
    const want = ofKind(directOut, "final");
    expect(got.map((e) => [e.windowStart, e.windowEnd, e.count])).toEqual(want.map((e) => [e.windowStart, e.windowEnd, e.count]));
    expect(got.length).toBe(10);
    got.forEach((e, i) => {
      const w = want[i]?.results ?? {};
      const inside = readings.filter((x) => x.ts >= e.windowStart && x.ts < e.windowEnd);
      const values = inside.map((x) => x.value);
      const sorted = [...values].sort((a, b) => a - b);
      const mean = values.reduce((a, b) => a + b, 0) / values.length;
      expect(e.count).toBe(inside.length);
      expect(e.results.sum).toBeCloseTo(values.reduce((a, b) => a + b, 0), 6);
      expect(e.results.avg).toBeCloseTo(mean, 9);
      expect(e.results.stddev).toBeCloseTo(Math.sqrt(values.reduce((a, v) => a + (v - mean) ** 2, 0) / values.length), 9);
      expect([e.results.min, e.results.max]).toEqual([sorted[0], sorted.at(-1)]);
      expect([e.results.first, e.results.last]).toEqual([inside[0]?.value, inside.at(-1)?.value]);
      for (const [name, q] of [["p50", 0.5], ["p99", 0.99]] as const) {
        const exact = sorted[Math.floor(q * (sorted.length - 1))] ?? NaN;
        expect(Math.abs((e.results[name] ?? NaN) - exact)).toBeLessThanOrEqual(SKETCH_RELATIVE_ACCURACY * Math.abs(exact) + 1e-9);
        expect(e.results[name]).toBe(w[name]); // sketches merge exactly
      }
      for (const name of ["sum", "avg", "stddev"] as const) expect(e.results[name]).toBeCloseTo(w[name] ?? NaN, 9);
      expect(sorted[0]).toBeLessThan(0);
    });
  });

  it("refuses a partial that does not fit one slice, lacks an aggregate's state or holds a malformed one, leaving the state as it was", () => {
    const hub = createOperator(definition({ window: { kind: "hopping", sizeMs: 60_000, hopMs: 20_000 }, aggregates: ["sum", "p50"], outOfOrderMs: 0, source: { partials: true } }));
    const states = { sum: { n: 2, sum: 5 }, p50: { pos: { "3": 1 }, neg: {}, zero: 1, n: 2 } };
    expect(hub.addPartial("k", { start: T0, end: T0 + 10_000, count: 2, states }, 0)).toEqual([]);
    const before = JSON.stringify(hub.snapshot());
    const refused: [PartialWindow, RegExp][] = [
      [{ start: T0 + 10_000, end: T0 + 30_000, count: 2, states }, /\[1699999990000, 1700000010000\) does not fit in one slice/],
      [{ start: T0, end: T0 + 10_000, count: 2, states: { sum: states.sum } }, /partial\.states\.p50 is missing/],
      [{ start: T0, end: T0 + 10_000, count: 2, states: { ...states, sum: { n: -1, sum: 5 } } }, /partial\.states\.sum\.n/],
      [{ start: T0, end: T0 + 10_000, count: 2, states: { ...states, sum: { n: 2, total: 5 } } }, /partial\.states\.sum/],
      [{ start: T0, end: T0 + 10_000, count: 2, states: { ...states, p50: { ...states.p50, n: 3 } } }, /partial\.states\.p50: n is not the sum/],
      [{ start: T0, end: T0 + 10_000, count: 2, states: { ...states, p50: { ...states.p50, pos: { x: 1 } } } }, /partial\.states\.p50\.pos/],
      [{ start: T0, end: T0, count: 2, states }, /partial\.end: end must be after start/],
      [{ start: T0, end: T0 + 10_000, count: -2, states }, /partial\.count/],
    ];
    for (const [partial, message] of refused) {
      expect(() => hub.addPartial("k", partial, 1)).toThrow(message);
      expect(() => hub.addPartial("k", partial, 1)).toThrow(InvalidInputError);
    }
    expect(JSON.stringify(hub.snapshot())).toBe(before);
    // an empty partial (an edge's empty window) counts nothing, and its window is empty at the hub too
    const out = hub.addPartial("k", { start: T0 + 100_000, end: T0 + 110_000, count: 0, states: { sum: { n: 0, sum: 0 }, p50: { pos: {}, neg: {}, zero: 0, n: 0 } } }, 2);
    expect(out.map((e) => e.kind !== "late" && [e.windowStart - T0, e.count, e.results.sum, e.empty])).toEqual([
      [-40_000, 2, 5, undefined],
      [-20_000, 2, 5, undefined],
      [0, 2, 5, undefined],
    ]);
    expect(ofKind(hub.tick(1_000_000), "final").map((e) => [e.windowStart - T0, e.count, e.empty])).toEqual([
      [60_000, 0, true],
      [80_000, 0, true],
      [100_000, 0, true],
    ]);
  });

  it("applies lateness to a partial as to a reading at end - 1: a revision within it, late (with the partial) beyond", () => {
    const hub = createOperator(definition({ window: { kind: "tumbling", sizeMs: 60_000 }, aggregates: ["count", "sum"], outOfOrderMs: 0, allowedLatenessMs: 60_000, source: { partials: true } }));
    const p = (from: number, n: number, sum: number): PartialWindow => ({ start: T0 + from, end: T0 + from + 10_000, count: n, states: { count: { n }, sum: { n, sum } } });
    expect(hub.addPartial("k", p(0, 2, 3), 0)).toEqual([]);
    const fired = hub.addPartial("k", p(60_000, 1, 1), 0);
    expect(fired).toEqual([{ kind: "final", key: "k", windowStart: T0, windowEnd: T0 + 60_000, revision: 0, count: 2, results: { count: 2, sum: 3 } }]);
    expect(fired[0]).not.toHaveProperty("states");
    expect(hub.addPartial("k", p(50_000, 4, 10), 0)).toEqual([{ kind: "revision", key: "k", windowStart: T0, windowEnd: T0 + 60_000, revision: 1, count: 6, results: { count: 6, sum: 13 } }]);
    expect(hub.addPartial("k", p(130_000, 1, 1), 0)).toMatchObject([{ kind: "final", windowStart: T0 + 60_000, count: 1 }]);
    expect(hub.addPartial("k", p(20_000, 1, 7), 0)).toEqual([{ kind: "late", key: "k", ts: T0 + 29_999, value: 1, reason: expect.stringContaining("beyond the allowed lateness") as string, partial: p(20_000, 1, 7) }]);
  });

  it("a hub fed partials (emitting partials itself) restored from a snapshot emits exactly what an uninterrupted run does", () => {
    const def = definition({
      window: { kind: "hopping", sizeMs: 60_000, hopMs: 30_000 },
      aggregates: ["count", "sum", "stddev", "p99", "first", "twa"],
      outOfOrderMs: 10_000,
      allowedLatenessMs: 30_000,
      source: { partials: true },
      emit: { partials: true, earlyEveryMs: 5_000 },
    });
    const r = rng(9);
    const steps: Step[] = [];
    for (let i = 0; i < 1_200; i++) {
      const start = T0 + Math.floor(i / 4) * 10_000 - (r() < 0.15 ? Math.floor(r() * 15) * 10_000 : 0);
      const values = Array.from({ length: 1 + Math.floor(r() * 4) }, (_, j) => ({ ts: start + j * 1_000, value: Math.round(r() * 40) - 20 }));
      const states = Object.fromEntries(
        (["count", "sum", "stddev", "p99", "first", "twa"] as const).map((name) => {
          const agg = AGGREGATES[name] as Aggregate<unknown>;
          return [name, values.reduce((s, v) => agg.add(s, v.value, v.ts), agg.init())];
        }),
      );
      steps.push({ key: `k${i % 4}`, partial: { start, end: start + 10_000, count: values.length, states }, now: i * 1_000 });
      if (i % 5 === 0) steps.push({ tick: i * 1_000 });
    }
    steps.push({ tick: 100_000_000 });
    const expected = expectResumes(def, steps);
    for (const kind of ["final", "revision", "early", "late"] as const) expect(expected.filter((e) => e.kind === kind).length).toBeGreaterThan(10);
    expect(ofKind(expected, "final").every((e) => typeof e.states?.count === "object")).toBe(true);
  });
});
