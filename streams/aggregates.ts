import { z } from "zod";

/**
 * Mergeable aggregates for windowed consumers. Every aggregate is a plain JSON state with `add` (one reading),
 * `merge` (two partial states: slices of a hopping window, partitions, an edge site's partials at the hub) and
 * `result`. States serialise as they are, for checkpoints and for shipping partials. Merging is associative and
 * commutative, so the result does not depend on how the input was split.
 */
export interface Aggregate<S> {
  init(): S;
  /** Adds a reading to the state, in place, and returns it. */
  add(state: S, value: number, ts: number): S;
  /** A new state holding both; the inputs are left as they were. */
  merge(a: S, b: S): S;
  /** The value; `window` (ms) lets time-based aggregates extrapolate to the window's bounds. */
  result(state: S, window?: { start: number; end: number }): number | null;
}

interface Moments {
  n: number;
  mean: number;
  m2: number;
}

interface Timed {
  ts: number;
  value: number;
}

/** Count, sum, min, max, avg (sum and count), population standard deviation (Welford; Chan to merge). */
const count: Aggregate<{ n: number }> = {
  init: () => ({ n: 0 }),
  add: (s) => {
    s.n++;
    return s;
  },
  merge: (a, b) => ({ n: a.n + b.n }),
  result: (s) => s.n,
};

const sum: Aggregate<{ n: number; sum: number }> = {
  init: () => ({ n: 0, sum: 0 }),
  add: (s, v) => {
    s.n++;
    s.sum += v;
    return s;
  },
  merge: (a, b) => ({ n: a.n + b.n, sum: a.sum + b.sum }),
  // the sum of no readings is 0 (an empty window's sum)
  result: (s) => s.sum,
};

/** min and max: the extreme of the readings by `pick`. */
function extreme(pick: (a: number, b: number) => number): Aggregate<{ v: number | null }> {
  return {
    init: () => ({ v: null }),
    add: (s, v) => {
      s.v = s.v === null ? v : pick(s.v, v);
      return s;
    },
    merge: (a, b) => ({ v: a.v === null ? b.v : b.v === null ? a.v : pick(a.v, b.v) }),
    result: (s) => s.v,
  };
}

const min = extreme(Math.min);
const max = extreme(Math.max);

const avg: Aggregate<{ n: number; sum: number }> = {
  ...sum,
  result: (s) => (s.n === 0 ? null : s.sum / s.n),
};

const stddev: Aggregate<Moments> = {
  init: () => ({ n: 0, mean: 0, m2: 0 }),
  add: (s, v) => {
    s.n++;
    const delta = v - s.mean;
    s.mean += delta / s.n;
    s.m2 += delta * (v - s.mean);
    return s;
  },
  merge: (a, b) => {
    if (a.n === 0) return { ...b };
    if (b.n === 0) return { ...a };
    const n = a.n + b.n;
    const delta = b.mean - a.mean;
    return { n, mean: a.mean + (delta * b.n) / n, m2: a.m2 + b.m2 + (delta * delta * a.n * b.n) / n };
  },
  result: (s) => (s.n === 0 ? null : Math.sqrt(s.m2 / s.n)),
};

/** Earlier event time wins; on a tie, the smaller value (so the result never depends on arrival order). */
function earlier(a: Timed | null, b: Timed | null): Timed | null {
  if (a === null) return b;
  if (b === null) return a;
  return b.ts < a.ts || (b.ts === a.ts && b.value < a.value) ? b : a;
}

/** Later event time wins; on a tie, the larger value. */
function later(a: Timed | null, b: Timed | null): Timed | null {
  if (a === null) return b;
  if (b === null) return a;
  return b.ts > a.ts || (b.ts === a.ts && b.value > a.value) ? b : a;
}

const first: Aggregate<{ at: Timed | null }> = {
  init: () => ({ at: null }),
  add: (s, value, ts) => {
    s.at = earlier(s.at, { ts, value });
    return s;
  },
  merge: (a, b) => ({ at: earlier(a.at, b.at) }),
  result: (s) => s.at?.value ?? null,
};

const last: Aggregate<{ at: Timed | null }> = {
  init: () => ({ at: null }),
  add: (s, value, ts) => {
    s.at = later(s.at, { ts, value });
    return s;
  },
  merge: (a, b) => ({ at: later(a.at, b.at) }),
  result: (s) => s.at?.value ?? null,
};

/**
 * A relative-error quantile sketch in the manner of DDSketch: values map to logarithmic buckets
 * (γ = (1+α)/(1−α)), negative values to a store of their own and zero to a counter, so a merge is adding
 * bucket counts, for negative temperatures too. A quantile is within α (relative) of the exact one.
 */
export const SKETCH_RELATIVE_ACCURACY = 0.01;
const GAMMA = (1 + SKETCH_RELATIVE_ACCURACY) / (1 - SKETCH_RELATIVE_ACCURACY);
const LOG_GAMMA = Math.log(GAMMA);
/** Values nearer zero than this count as zero. */
const MIN_INDEXABLE = 1e-9;

export interface SketchState {
  pos: Record<string, number>;
  neg: Record<string, number>;
  zero: number;
  n: number;
}

function bucketOf(v: number): number {
  return Math.ceil(Math.log(v) / LOG_GAMMA);
}

function bucketValue(i: number): number {
  // the bucket's midpoint in relative terms: 2γ^i / (γ + 1)
  return (2 * Math.pow(GAMMA, i)) / (GAMMA + 1);
}

function addCounts(a: Record<string, number>, b: Record<string, number>): Record<string, number> {
  const out = { ...a };
  for (const [k, c] of Object.entries(b)) out[k] = (out[k] ?? 0) + c;
  return out;
}

export const sketch = {
  init: (): SketchState => ({ pos: {}, neg: {}, zero: 0, n: 0 }),
  add: (s: SketchState, v: number): SketchState => {
    if (Math.abs(v) < MIN_INDEXABLE) s.zero++;
    else {
      const store = v > 0 ? s.pos : s.neg;
      const k = String(bucketOf(Math.abs(v)));
      store[k] = (store[k] ?? 0) + 1;
    }
    s.n++;
    return s;
  },
  merge: (a: SketchState, b: SketchState): SketchState => ({ pos: addCounts(a.pos, b.pos), neg: addCounts(a.neg, b.neg), zero: a.zero + b.zero, n: a.n + b.n }),
  /** The q-quantile (0 ≤ q ≤ 1) by rank ⌊q·(n−1)⌋, as numpy's "lower". */
  quantile: (s: SketchState, q: number): number | null => {
    if (s.n === 0) return null;
    const rank = Math.floor(q * (s.n - 1));
    let seen = 0;
    // most negative first: negative buckets from the largest magnitude down
    const neg = Object.entries(s.neg).map(([k, c]) => [Number(k), c] as const).sort((x, y) => y[0] - x[0]);
    for (const [i, c] of neg) {
      seen += c;
      if (seen > rank) return -bucketValue(i);
    }
    seen += s.zero;
    if (seen > rank) return 0;
    const pos = Object.entries(s.pos).map(([k, c]) => [Number(k), c] as const).sort((x, y) => x[0] - y[0]);
    for (const [i, c] of pos) {
      seen += c;
      if (seen > rank) return bucketValue(i);
    }
    return null;
  },
};

function percentile(q: number): Aggregate<SketchState> {
  return { init: sketch.init, add: (s, v) => sketch.add(s, v), merge: sketch.merge, result: (s) => sketch.quantile(s, q) };
}

/**
 * Counters and time-weighted values need the readings in event-time order: the state is the readings, sorted
 * (a reading of the same time replaces the earlier one). A window of a device holds few of them; past
 * MAX_SAMPLES the oldest are folded into a prefix (exact as long as no later reading is older than them).
 */
export const MAX_SAMPLES = 10_000;

export interface SamplesState {
  /** Folded prefix: first and last reading and the reset-aware increase between them. */
  head: { first: Timed; last: Timed; inc: number } | null;
  samples: Timed[];
}

function insertSorted(list: Timed[], t: Timed): void {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if ((list[mid]?.ts ?? 0) < t.ts) lo = mid + 1;
    else hi = mid;
  }
  if (list[lo]?.ts === t.ts) list[lo] = t;
  else list.splice(lo, 0, t);
}

/** Reset-aware increase along readings: a drop means the counter restarted from zero. */
function stepIncrease(prev: Timed, next: Timed): number {
  return next.value >= prev.value ? next.value - prev.value : next.value;
}

function fold(s: SamplesState): void {
  const cut = s.samples.splice(0, s.samples.length - MAX_SAMPLES / 2);
  let head = s.head;
  for (const t of cut) {
    head = head === null ? { first: t, last: t, inc: 0 } : { first: head.first, last: t, inc: head.inc + stepIncrease(head.last, t) };
  }
  s.head = head;
}

const samples = {
  init: (): SamplesState => ({ head: null, samples: [] }),
  add: (s: SamplesState, value: number, ts: number): SamplesState => {
    insertSorted(s.samples, { ts, value });
    if (s.samples.length > MAX_SAMPLES) fold(s);
    return s;
  },
  merge: (a: SamplesState, b: SamplesState): SamplesState => {
    const out: SamplesState = { head: a.head ?? b.head, samples: [...a.samples] };
    for (const t of b.samples) insertSorted(out.samples, t);
    if (a.head !== null && b.head !== null) {
      // both folded: join the prefixes in time order
      const [x, y] = a.head.first.ts <= b.head.first.ts ? [a.head, b.head] : [b.head, a.head];
      out.head = { first: x.first, last: y.last, inc: x.inc + y.inc + stepIncrease(x.last, y.first) };
    }
    if (out.samples.length > MAX_SAMPLES) fold(out);
    return out;
  },
};

/** The readings in order, the folded prefix standing in for its first and last. */
function span(s: SamplesState): { first: Timed; last: Timed; inc: number } | null {
  let acc = s.head;
  for (const t of s.samples) acc = acc === null ? { first: t, last: t, inc: 0 } : { first: acc.first, last: t, inc: acc.inc + stepIncrease(acc.last, t) };
  return acc;
}

/**
 * Extrapolated increase, as Prometheus does: the increase over the readings, stretched to the window's bounds
 * where the readings stop short of them by less than 1.1 average intervals (else by half an interval), and a
 * counter is not taken below zero at the start.
 */
function extrapolated(s: SamplesState, window: { start: number; end: number } | undefined): number | null {
  const sp = span(s);
  if (sp === null) return null;
  const n = s.samples.length + (s.head === null ? 0 : 2);
  if (window === undefined || n < 2 || sp.last.ts === sp.first.ts) return sp.inc;
  const sampled = sp.last.ts - sp.first.ts;
  const avgInterval = sampled / (n - 1);
  let toStart = sp.first.ts - window.start;
  let toEnd = window.end - sp.last.ts;
  const threshold = avgInterval * 1.1;
  if (toStart >= threshold) toStart = avgInterval / 2;
  if (toEnd >= threshold) toEnd = avgInterval / 2;
  // a counter cannot have been below zero before its first reading
  if (sp.inc > 0 && sp.first.value >= 0) toStart = Math.min(toStart, sampled * (sp.first.value / sp.inc));
  return sp.inc * ((sampled + toStart + toEnd) / sampled);
}

const increase: Aggregate<SamplesState> = { ...samples, result: (s) => span(s)?.inc ?? null };
const increaseExtrapolated: Aggregate<SamplesState> = { ...samples, result: (s, w) => extrapolated(s, w) };

/** Per-second rate over the readings' span (exact) or the window (extrapolated). */
const rate: Aggregate<SamplesState> = {
  ...samples,
  result: (s) => {
    const sp = span(s);
    return sp === null || sp.last.ts === sp.first.ts ? null : sp.inc / ((sp.last.ts - sp.first.ts) / 1000);
  },
};
const rateExtrapolated: Aggregate<SamplesState> = {
  ...samples,
  result: (s, w) => {
    const inc = extrapolated(s, w);
    return inc === null || w === undefined || w.end === w.start ? null : inc / ((w.end - w.start) / 1000);
  },
};

/**
 * Time-weighted average: each reading holds until the next (the last one until the window's end, when known).
 * A device that reports only on change is averaged over time, not over messages.
 */
const twa: Aggregate<SamplesState> = {
  ...samples,
  result: (s, w) => {
    const list = s.head === null ? s.samples : [s.head.first, s.head.last, ...s.samples];
    if (list.length === 0) return null;
    let area = 0;
    let time = 0;
    for (let i = 0; i < list.length; i++) {
      const t = list[i];
      if (t === undefined) continue;
      const until = list[i + 1]?.ts ?? (w === undefined ? t.ts : Math.max(t.ts, w.end));
      area += t.value * (until - t.ts);
      time += until - t.ts;
    }
    return time === 0 ? (list[list.length - 1]?.value ?? null) : area / time;
  },
};

export const AGGREGATES = {
  count,
  sum,
  min,
  max,
  avg,
  stddev,
  first,
  last,
  increase,
  increase_extrapolated: increaseExtrapolated,
  rate,
  rate_extrapolated: rateExtrapolated,
  twa,
  p50: percentile(0.5),
  p90: percentile(0.9),
  p95: percentile(0.95),
  p99: percentile(0.99),
} as const;

export type AggregateName = keyof typeof AGGREGATES;
export const aggregateNameSchema = z.enum(Object.keys(AGGREGATES) as [AggregateName, ...AggregateName[]]);

/** The state type of an aggregate. */
export type StateOf<N extends AggregateName> = (typeof AGGREGATES)[N] extends Aggregate<infer S> ? S : never;

const tally = z.number().int().min(0);
const timed = z.strictObject({ ts: z.number(), value: z.number() });
const countState = z.strictObject({ n: tally });
const sumState = z.strictObject({ n: tally, sum: z.number() });
const extremeState = z.strictObject({ v: z.number().nullable() });
const timedState = z.strictObject({ at: timed.nullable() });
const buckets = z.record(z.string().regex(/^-?\d+$/, "bucket indices are integers"), z.number().int().positive());
const sketchState = z
  .strictObject({ pos: buckets, neg: buckets, zero: tally, n: tally })
  .refine((s) => Object.values(s.pos).reduce((a, c) => a + c, s.zero) + Object.values(s.neg).reduce((a, c) => a + c, 0) === s.n, "n is not the sum of the bucket counts");
const samplesState = z.strictObject({ head: z.strictObject({ first: timed, last: timed, inc: z.number() }).nullable(), samples: z.array(timed) });

/** Each aggregate's state as data: what a shipped partial (emit.partials, source.partials) must hold. */
export const STATE_SCHEMAS: { [N in AggregateName]: z.ZodType<StateOf<N>> } = {
  count: countState,
  sum: sumState,
  min: extremeState,
  max: extremeState,
  avg: sumState,
  stddev: z.strictObject({ n: tally, mean: z.number(), m2: z.number() }),
  first: timedState,
  last: timedState,
  increase: samplesState,
  increase_extrapolated: samplesState,
  rate: samplesState,
  rate_extrapolated: samplesState,
  twa: samplesState,
  p50: sketchState,
  p90: sketchState,
  p95: sketchState,
  p99: sketchState,
};
