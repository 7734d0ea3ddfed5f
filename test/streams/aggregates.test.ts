import { describe, expect, it } from "vitest";
import { AGGREGATES, SKETCH_RELATIVE_ACCURACY, sketch, slicedWindowSchema, slicesOf, sliceStart, windowsOf, windowSpecSchema, type Aggregate, type AggregateName } from "../../streams/index.js";
import { rng } from "./operator-steps.js";


interface Reading {
  value: number;
  ts: number;
}

function readings(seed: number, n: number): Reading[] {
  const r = rng(seed);
  // temperatures around zero, negative ones included, at shuffled event times
  return Array.from({ length: n }, (_, i) => ({ value: Math.round((r() * 80 - 30) * 100) / 100, ts: 1_700_000_000_000 + Math.floor(r() * 60_000) + i }));
}

/** Folds readings into an aggregate state split into random parts merged in a random order. */
function splitAndMerge<S>(agg: Aggregate<S>, data: Reading[], seed: number): S {
  const r = rng(seed);
  const parts: S[] = [];
  let cur = agg.init();
  for (const d of data) {
    agg.add(cur, d.value, d.ts);
    if (r() < 0.05) {
      parts.push(cur);
      cur = agg.init();
    }
  }
  parts.push(cur);
  parts.sort(() => r() - 0.5);
  return parts.reduce((acc, p) => agg.merge(acc, p), agg.init());
}

const exact = {
  count: (d: Reading[]) => d.length,
  sum: (d: Reading[]) => d.reduce((s, x) => s + x.value, 0),
  min: (d: Reading[]) => Math.min(...d.map((x) => x.value)),
  max: (d: Reading[]) => Math.max(...d.map((x) => x.value)),
  avg: (d: Reading[]) => d.reduce((s, x) => s + x.value, 0) / d.length,
  stddev: (d: Reading[]) => {
    const m = d.reduce((s, x) => s + x.value, 0) / d.length;
    return Math.sqrt(d.reduce((s, x) => s + (x.value - m) ** 2, 0) / d.length);
  },
  first: (d: Reading[]) => [...d].sort((a, b) => a.ts - b.ts || a.value - b.value)[0]?.value,
  last: (d: Reading[]) => [...d].sort((a, b) => b.ts - a.ts || b.value - a.value)[0]?.value,
};

describe("mergeable aggregates", () => {
  const data = readings(42, 5_000);

  for (const name of Object.keys(exact) as (keyof typeof exact)[]) {
    it(`${name}: the same however the input is split and merged, and equal to the exact value`, () => {
      const agg = AGGREGATES[name] as Aggregate<unknown>;
      const whole = agg.result(data.reduce((s, d) => agg.add(s, d.value, d.ts), agg.init()));
      const split = agg.result(splitAndMerge(agg, data, 7));
      expect(whole).toBeCloseTo(exact[name](data) ?? NaN, 6);
      expect(split).toBeCloseTo(whole ?? NaN, 6);
    });
  }

  it("first and last go by event time, not arrival", () => {
    const late = [
      { value: 1, ts: 2_000 },
      { value: 2, ts: 1_000 },
      { value: 3, ts: 3_000 },
    ];
    const f = late.reduce((s, d) => AGGREGATES.first.add(s, d.value, d.ts), AGGREGATES.first.init());
    const l = late.reduce((s, d) => AGGREGATES.last.add(s, d.value, d.ts), AGGREGATES.last.init());
    expect(AGGREGATES.first.result(f)).toBe(2);
    expect(AGGREGATES.last.result(l)).toBe(3);
  });

  it("percentiles stay within the sketch's relative accuracy, negative values included, after merging", () => {
    const values = data.map((d) => d.value).sort((a, b) => a - b);
    for (const [name, q] of [
      ["p50", 0.5],
      ["p90", 0.9],
      ["p99", 0.99],
    ] as [AggregateName, number][]) {
      const agg = AGGREGATES[name] as Aggregate<unknown>;
      const got = agg.result(splitAndMerge(agg, data, 11)) ?? NaN;
      const want = values[Math.floor(q * (values.length - 1))] ?? NaN;
      expect(Math.abs(got - want)).toBeLessThanOrEqual(Math.abs(want) * SKETCH_RELATIVE_ACCURACY + 1e-9);
    }
    // all negative: the median of -1..-101 is -51
    const neg = Array.from({ length: 101 }, (_, i) => -(i + 1)).reduce((s, v) => sketch.add(s, v), sketch.init());
    expect(Math.abs((sketch.quantile(neg, 0.5) ?? 0) + 51)).toBeLessThanOrEqual(51 * SKETCH_RELATIVE_ACCURACY);
  });

  it("states survive a JSON round trip (checkpoints, shipped partials)", () => {
    for (const name of Object.keys(AGGREGATES) as AggregateName[]) {
      const agg = AGGREGATES[name] as Aggregate<unknown>;
      const s = data.slice(0, 500).reduce((acc, d) => agg.add(acc, d.value, d.ts), agg.init());
      const back = JSON.parse(JSON.stringify(s)) as unknown;
      expect(agg.result(agg.merge(back, agg.init()))).toEqual(agg.result(s));
    }
  });
});

describe("window assignment", () => {
  it("tumbling windows align to the epoch with an offset", () => {
    const spec = slicedWindowSchema.parse({ kind: "tumbling", sizeMs: 10_000, offsetMs: 2_000 });
    expect(windowsOf(spec, 12_000)).toEqual([12_000]);
    expect(windowsOf(spec, 11_999)).toEqual([2_000]);
    expect(sliceStart(spec, 21_999)).toBe(12_000);
  });

  it("a hopping window is the merge of its slices: each reading added once", () => {
    const spec = slicedWindowSchema.parse({ kind: "hopping", sizeMs: 60_000, hopMs: 10_000 });
    expect(windowsOf(spec, 65_000)).toEqual([10_000, 20_000, 30_000, 40_000, 50_000, 60_000]);
    expect(slicesOf(spec, 10_000)).toEqual([10_000, 20_000, 30_000, 40_000, 50_000, 60_000]);
    // a window computed from slice sums equals the sum of its readings
    const data = readings(3, 2_000).map((d) => ({ ...d, ts: d.ts - 1_700_000_000_000 }));
    const slices = new Map<number, { n: number; sum: number }>();
    for (const d of data) {
      const k = sliceStart(spec, d.ts);
      slices.set(k, AGGREGATES.sum.add(slices.get(k) ?? AGGREGATES.sum.init(), d.value, d.ts));
    }
    for (const start of [0, 10_000, 30_000]) {
      const merged = slicesOf(spec, start).reduce((acc, s) => AGGREGATES.sum.merge(acc, slices.get(s) ?? AGGREGATES.sum.init()), AGGREGATES.sum.init());
      const direct = data.filter((d) => d.ts >= start && d.ts < start + 60_000).reduce((s, d) => s + d.value, 0);
      expect(AGGREGATES.sum.result(merged) ?? 0).toBeCloseTo(direct, 6);
    }
  });

  it("refuses a definition naming the wrong field", () => {
    const r = windowSpecSchema.safeParse({ kind: "hopping", sizeMs: 60_000 });
    expect(r.success).toBe(false);
    expect(r.error?.issues[0]?.path).toEqual(["hopMs"]);
  });
});

describe("counters and time-weighted values", () => {
  const counter = [
    { ts: 0, value: 0 },
    { ts: 1_000, value: 10 },
    { ts: 2_000, value: 25 },
    { ts: 3_000, value: 5 }, // the device restarted: the counter began again from zero
    { ts: 4_000, value: 15 },
  ];

  it("increase and rate are reset-aware and do not depend on arrival order or splits", () => {
    for (const seed of [1, 2, 3]) {
      const shuffled = [...counter].sort(() => rng(seed)() - 0.5);
      const s = splitAndMerge(AGGREGATES.increase, shuffled, seed);
      expect(AGGREGATES.increase.result(s)).toBe(10 + 15 + 5 + 10);
      expect(AGGREGATES.rate.result(s)).toBe(40 / 4);
    }
  });

  it("extrapolates to the window's bounds, never below zero at the start", () => {
    const s = counter.reduce((acc, d) => AGGREGATES.increase_extrapolated.add(acc, d.value, d.ts), AGGREGATES.increase_extrapolated.init());
    // readings start at the counter's zero: no extrapolation backwards; half an interval forwards
    expect(AGGREGATES.increase_extrapolated.result(s, { start: -500, end: 4_500 })).toBeCloseTo(45, 9);
    expect(AGGREGATES.rate_extrapolated.result(s, { start: -500, end: 4_500 })).toBeCloseTo(45 / 5, 9);
  });

  it("time-weighted average weighs each value by how long it held", () => {
    const readingsOnChange = [
      { ts: 0, value: 1 },
      { ts: 1_000, value: 3 },
      { ts: 3_000, value: 5 },
    ];
    const s = readingsOnChange.reduce((acc, d) => AGGREGATES.twa.add(acc, d.value, d.ts), AGGREGATES.twa.init());
    expect(AGGREGATES.twa.result(s, { start: 0, end: 4_000 })).toBeCloseTo((1 * 1_000 + 3 * 2_000 + 5 * 1_000) / 4_000, 9);
    expect(AGGREGATES.avg.result(readingsOnChange.reduce((acc, d) => AGGREGATES.avg.add(acc, d.value, d.ts), AGGREGATES.avg.init()))).toBe(3);
  });
});
