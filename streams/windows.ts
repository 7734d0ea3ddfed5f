import { z } from "zod";

/**
 * Window assignment, aligned to the epoch (plus an optional offset). Hopping windows are built from slices
 * (panes): one accumulator per slice of gcd(size, hop), each window the merge of its slices, so a reading is
 * added once however many windows overlap it.
 */
const tumblingSchema = z.strictObject({ kind: z.literal("tumbling"), sizeMs: z.number().int().positive(), offsetMs: z.number().int().min(0).default(0) });
const hoppingSchema = z.strictObject({
  kind: z.literal("hopping"),
  sizeMs: z.number().int().positive(),
  hopMs: z.number().int().positive(),
  offsetMs: z.number().int().min(0).default(0),
});
const sessionSchema = z.strictObject({ kind: z.literal("session"), gapMs: z.number().int().positive() });

/** Tumbling and hopping windows: aligned, built from slices. */
export const slicedWindowSchema = z.discriminatedUnion("kind", [tumblingSchema, hoppingSchema]);
export type SlicedWindowSpec = z.output<typeof slicedWindowSchema>;
export const windowSpecSchema = z.discriminatedUnion("kind", [tumblingSchema, hoppingSchema, sessionSchema]);
export type WindowSpec = z.output<typeof windowSpecSchema>;

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

/** The slice length of a tumbling or hopping window. */
export function sliceMs(spec: SlicedWindowSpec): number {
  return spec.kind === "tumbling" ? spec.sizeMs : gcd(spec.sizeMs, spec.hopMs);
}

/** Start of the slice holding `ts`. */
export function sliceStart(spec: SlicedWindowSpec, ts: number): number {
  const len = sliceMs(spec);
  return Math.floor((ts - spec.offsetMs) / len) * len + spec.offsetMs;
}

/** Starts of every window holding `ts` (one for tumbling; size/hop for hopping), earliest first. */
export function windowsOf(spec: SlicedWindowSpec, ts: number): number[] {
  if (spec.kind === "tumbling") return [sliceStart(spec, ts)];
  const last = Math.floor((ts - spec.offsetMs) / spec.hopMs) * spec.hopMs + spec.offsetMs;
  const out: number[] = [];
  for (let start = last; start > ts - spec.sizeMs; start -= spec.hopMs) out.unshift(start);
  return out;
}

/** The slice starts a window [start, start + size) is made of. */
export function slicesOf(spec: SlicedWindowSpec, windowStart: number): number[] {
  const len = sliceMs(spec);
  const out: number[] = [];
  for (let s = windowStart; s < windowStart + spec.sizeMs; s += len) out.push(s);
  return out;
}
