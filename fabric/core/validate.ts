import type { z } from "zod";
import { InvalidInputError } from "./errors.js";

/**
 * Parses external input with a strict zod schema; a failure becomes one InvalidInputError whose message
 * names the field (`what.field: reason`), for every problem found.
 */
export function parseInput<S extends z.ZodType>(schema: S, input: unknown, what: string): z.infer<S> {
  const r = schema.safeParse(input);
  if (r.success) return r.data;
  const problems = r.error.issues.map((i) => `${[what, ...i.path.map(String)].join(".")}: ${i.message}`);
  throw new InvalidInputError(`invalid ${what}: ${problems.join("; ")}`, { cause: r.error });
}
