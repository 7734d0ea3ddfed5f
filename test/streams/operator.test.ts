import { describe, expect, it } from "vitest";
import { parseInput } from "../../fabric/core/index.js";
import { WindowOperator, windowDefinitionSchema, type Emission, type WindowDefinitionInput } from "../../streams/index.js";

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
