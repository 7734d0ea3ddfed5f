import { z } from "zod";

/**
 * Window assignment, aligned to the epoch (plus an optional offset). Hopping windows are built from slices
 * (panes): one accumulator per slice of gcd(size, hop), each window the merge of its slices, so a reading is
 * added once however many windows overlap it.
 */
const tumblingSchema = z.strictObject({
  kind: z.literal("tumbling"),
  /** Window length; windows follow each other. */
  sizeMs: z.number().int().positive(),
  /** Windows start at offsetMs past a multiple of their size (since the epoch). */
  offsetMs: z.number().int().min(0).default(0),
});
const hoppingSchema = z.strictObject({
  kind: z.literal("hopping"),
  /** Window length. */
  sizeMs: z.number().int().positive(),
  /** A window starts every hopMs (windows overlap when hopMs < sizeMs). */
  hopMs: z.number().int().positive(),
  /** Windows start at offsetMs past a multiple of hopMs. */
  offsetMs: z.number().int().min(0).default(0),
});
const sessionSchema = z.strictObject({
  kind: z.literal("session"),
  /** A key's readings less than gapMs apart (event time) are one session, its window [first, last + gapMs). */
  gapMs: z.number().int().positive(),
});

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

/** The first aligned window start whose window ends after `after`. */
function firstEndingAfter(spec: SlicedWindowSpec, after: number): number {
  const hop = spec.kind === "tumbling" ? spec.sizeMs : spec.hopMs;
  return Math.floor((after - spec.sizeMs - spec.offsetMs) / hop) * hop + spec.offsetMs + hop;
}

/** Starts of the windows whose end lies in (after, upTo], earliest first. */
export function windowsEndingIn(spec: SlicedWindowSpec, after: number, upTo: number): number[] {
  const hop = spec.kind === "tumbling" ? spec.sizeMs : spec.hopMs;
  const out: number[] = [];
  for (let start = firstEndingAfter(spec, after); start + spec.sizeMs <= upTo; start += hop) out.push(start);
  return out;
}

/** The end of the earliest window holding `ts`. */
export function firstWindowEnd(spec: SlicedWindowSpec, ts: number): number {
  return firstEndingAfter(spec, ts) + spec.sizeMs;
}

/** Whether some window ends in (after, upTo]: a watermark moving within such a gap changes nothing. */
export function crossesWindowEnd(spec: SlicedWindowSpec, after: number, upTo: number): boolean {
  return firstEndingAfter(spec, after) + spec.sizeMs <= upTo;
}
