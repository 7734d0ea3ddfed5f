import { z } from "zod";
import { TOKEN_PATTERN } from "../fabric/core/index.js";
import { aggregateNameSchema } from "./aggregates.js";
import { windowSpecSchema } from "./windows.js";

/**
 * A windowed aggregation, declared: what to read, how to key it, which window, which aggregates, how event
 * time and lateness are handled, and what to emit. One schema for files, the CLI and the TypeScript API; an
 * invalid definition is refused with a message naming the field (parseInput).
 */
export const windowDefinitionSchema = z
  .strictObject({
    /** The definition's name: its results are published under agg.<name>.<key>. */
    name: z.string().regex(TOKEN_PATTERN, "names are lowercase letters, digits, '_' and '-'").max(64),
    source: z
      .strictObject({
        /** The stream read, and the subjects of it. */
        stream: z.string().min(1).default("TELEMETRY"),
        filter: z.string().min(1).default("telemetry.>"),
        /**
         * The messages are partial results of another definition (one with emit.partials, e.g. at an edge
         * site), merged here instead of readings: tumbling and hopping windows whose slices each hold whole
         * partials. Each partial counts once, so the other definition should be tumbling and only its final
         * results sent (an early result or a revision repeats its window's readings).
         */
        partials: z.boolean().default(false),
      })
      .prefault({}),
    /** Subject tokens that make the key (0-based): by default site, device and metric of telemetry.<site>.<device>.<metric>. */
    key: z.array(z.number().int().min(0)).min(1).default([1, 2, 3]),
    /** Tumbling, hopping or session windows (windows.ts). */
    window: windowSpecSchema,
    /** What each window computes (aggregates.ts); at least one. */
    aggregates: z.array(aggregateNameSchema).min(1),
    /** Payload fields of the reading and its event time (epoch ms); not read with source.partials. */
    valueField: z.string().min(1).default("value"),
    eventTimeField: z.string().min(1).default("ts"),
    /** Bounded out-of-orderness: a key's watermark trails the latest event time it has seen by this much. */
    outOfOrderMs: z.number().int().min(0).default(5_000),
    /** A reading this late (behind the watermark, past its window's end) still re-fires the window with a new revision. */
    allowedLatenessMs: z.number().int().min(0).default(0),
    /** A key silent this long (processing time) has its open windows closed: a device that stopped still gets results. */
    idleCloseMs: z.number().int().positive().default(30_000),
    /**
     * Keys are spread over this many partitions (NATS's deterministic `partition(n, key tokens)` hash); workers
     * share a definition by partition, and one key is never split across workers.
     */
    partitions: z.number().int().min(1).max(1024).default(8),
    emit: z
      .strictObject({
        /** Early (partial) results of open windows at this processing-time interval. */
        earlyEveryMs: z.number().int().positive().optional(),
        /**
         * Tumbling and hopping windows: a window without readings, after a key's first one, fires too, with
         * count 0 and `empty: true`, so a device that stopped reporting shows as zeros rather than nothing.
         */
        emptyWindows: z.boolean().default(false),
        /**
         * With emptyWindows: empty windows come up to this long after a key's latest reading (its event time; a
         * silent key's runs on with processing time, see idleCloseMs), at most emptyForMs / hop of them in a row;
         * a key silent this long is forgotten.
         */
        emptyForMs: z.number().int().positive().default(600_000),
        /** Results carry each aggregate's merged state (`states`), for a definition with source.partials to merge. */
        partials: z.boolean().default(false),
      })
      .prefault({}),
  })
  .superRefine((def, ctx) => {
    if (def.window.kind !== "session") return;
    if (def.emit.emptyWindows) ctx.addIssue({ code: "custom", path: ["emit", "emptyWindows"], message: "empty windows are for tumbling and hopping windows, not session windows" });
    if (def.source.partials) ctx.addIssue({ code: "custom", path: ["source", "partials"], message: "partial input is for tumbling and hopping windows, not session windows" });
  });
export type WindowDefinition = z.output<typeof windowDefinitionSchema>;
export type WindowDefinitionInput = z.input<typeof windowDefinitionSchema>;
