import { z } from "zod";
import { TOKEN_PATTERN } from "../fabric/core/index.js";
import { aggregateNameSchema } from "./aggregates.js";
import { windowSpecSchema } from "./windows.js";

/**
 * A windowed aggregation, declared: what to read, how to key it, which window, which aggregates, how event
 * time and lateness are handled, and what to emit. One schema for files, the CLI and the TypeScript API; an
 * invalid definition is refused with a message naming the field (parseInput).
 */
export const windowDefinitionSchema = z.strictObject({
  name: z.string().regex(TOKEN_PATTERN, "names are lowercase letters, digits, '_' and '-'").max(64),
  source: z
    .strictObject({
      stream: z.string().min(1).default("TELEMETRY"),
      filter: z.string().min(1).default("telemetry.>"),
    })
    .default({ stream: "TELEMETRY", filter: "telemetry.>" }),
  /** Subject tokens that make the key (0-based): by default site, device and metric of telemetry.<site>.<device>.<metric>. */
  key: z.array(z.number().int().min(0)).min(1).default([1, 2, 3]),
  window: windowSpecSchema,
  aggregates: z.array(aggregateNameSchema).min(1),
  /** Payload fields of the reading and its event time (epoch ms). */
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
    })
    .default({}),
});
export type WindowDefinition = z.output<typeof windowDefinitionSchema>;
export type WindowDefinitionInput = z.input<typeof windowDefinitionSchema>;
