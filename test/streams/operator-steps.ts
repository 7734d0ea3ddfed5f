import { expect } from "vitest";
import { createOperator, restoreOperator, windowDefinitionSchema, type Emission, type Operator, type OperatorState, type PartialWindow, type WindowDefinition, type WindowDefinitionInput, type WindowResult } from "../../streams/index.js";

/** Operator input, in order: a reading, a partial, or processing time passing. */
export type Step = { key: string; value: number; ts: number; now: number } | { key: string; partial: PartialWindow; now: number } | { tick: number };

export function definition(input: Omit<WindowDefinitionInput, "name">): WindowDefinition {
  return windowDefinitionSchema.parse({ name: "t", ...input });
}

export function run(op: Operator, steps: readonly Step[]): Emission[] {
  return steps.flatMap((s) => ("tick" in s ? op.tick(s.tick) : "partial" in s ? op.addPartial(s.key, s.partial, s.now) : op.add(s.key, s.value, s.ts, s.now)));
}

/** The window results of a kind. */
export function ofKind(out: readonly Emission[], kind: WindowResult["kind"]): WindowResult[] {
  return out.flatMap((e) => (e.kind === kind ? [e] : []));
}

/**
 * Runs `steps` uninterrupted, and again with the operator snapshotted (through JSON) and restored after every
 * `every` steps: both runs must emit exactly the same. Returns the emissions.
 */
export function expectResumes(def: WindowDefinition, steps: readonly Step[], every = 1): Emission[] {
  const expected = run(createOperator(def), steps);
  let op = createOperator(def);
  const resumed: Emission[] = [];
  for (let i = 0; i < steps.length; i += every) {
    resumed.push(...run(op, steps.slice(i, i + every)));
    op = restoreOperator(def, JSON.parse(JSON.stringify(op.snapshot())) as OperatorState);
  }
  expect(resumed).toEqual(expected);
  return expected;
}

/** A small seeded generator (mulberry32), so a failure can be replayed. */
export function rng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}
