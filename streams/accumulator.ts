import { InvalidInputError, parseInput } from "../fabric/core/index.js";
import { AGGREGATES, STATE_SCHEMAS, type Aggregate, type AggregateName } from "./aggregates.js";

export type States = Partial<Record<AggregateName, unknown>>;
export type Results = Partial<Record<AggregateName, number | null>>;

/** Readings folded together: how many, and each aggregate's state. */
export interface Accumulator {
  n: number;
  states: States;
}

/** The aggregates of one definition, over accumulators (a slice, a session, a shipped partial). */
export class Aggregation {
  private readonly list: readonly [AggregateName, Aggregate<unknown>][];

  constructor(names: readonly AggregateName[]) {
    this.list = names.map((name) => [name, AGGREGATES[name] as Aggregate<unknown>]);
  }

  empty(): Accumulator {
    const states: States = {};
    for (const [name, agg] of this.list) states[name] = agg.init();
    return { n: 0, states };
  }

  /** Adds a reading, in place. */
  add(acc: Accumulator, value: number, ts: number): void {
    acc.n++;
    for (const [name, agg] of this.list) acc.states[name] = agg.add(acc.states[name], value, ts);
  }

  /** A new accumulator holding all of `parts` (none: an empty one); the parts are left as they were. */
  merge(parts: readonly Accumulator[]): Accumulator {
    const out = this.empty();
    for (const p of parts) {
      out.n += p.n;
      for (const [name, agg] of this.list) out.states[name] = agg.merge(out.states[name], p.states[name]);
    }
    return out;
  }

  results(acc: Accumulator, window: { start: number; end: number }): Results {
    const out: Results = {};
    for (const [name, agg] of this.list) out[name] = agg.result(acc.states[name], window);
    return out;
  }

  /**
   * A shipped partial's `count` and `states` as an accumulator: every aggregate of this definition must be
   * there and well-formed (others are ignored), else InvalidInputError naming it.
   */
  parse(count: number, states: Readonly<Record<string, unknown>>): Accumulator {
    const out: States = {};
    for (const [name] of this.list) {
      if (states[name] === undefined) throw new InvalidInputError(`invalid partial: partial.states.${name} is missing (an aggregate of this definition)`);
      out[name] = parseInput(STATE_SCHEMAS[name], states[name], `partial.states.${name}`);
    }
    return { n: count, states: out };
  }
}
