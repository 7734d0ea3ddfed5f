import { z } from "zod";

/** The registry's key of a device: `<site>.<name>` (`_.<name>` for a device of no site). */
export function deviceKey(name: string, site: string | undefined): string {
  return `${site ?? "_"}.${name}`;
}

export const deviceStateSchema = z.looseObject({
  online: z.boolean(),
  /** Unix ms of the last connect, disconnect or report. */
  lastSeen: z.number(),
  /** How it is connected (or was last): `nats`, `mqtt-3.1.1`, `mqtt-5.0`, `homie`… */
  protocol: z.string().optional(),
  /** Open connections now (a device may hold more than one). */
  connections: z.number().int().min(0),
});
export type DeviceState = z.infer<typeof deviceStateSchema>;

export const deviceRecordSchema = z.looseObject({
  name: z.string(),
  site: z.string().optional(),
  role: z.string().optional(),
  /** The public keys issued to it (or seen connecting). */
  keys: z.array(z.string()),
  /** Its credential's tags. */
  tags: z.array(z.string()),
  /** Set by operators: model, firmware, location, anything else. */
  metadata: z.record(z.string(), z.string()),
  /** Attributes a Homie v4 device published (`$homie`, `$name`, `$state`, `$nodes`, …). */
  homie: z.record(z.string(), z.string()).optional(),
  /** How the registry first learnt of it. */
  source: z.enum(["issued", "seen"]),
  firstSeen: z.number(),
  state: deviceStateSchema,
});
export type DeviceRecord = z.infer<typeof deviceRecordSchema>;

/** A new record: not online, seen now. */
export function newDevice(name: string, site: string | undefined, source: DeviceRecord["source"], now = Date.now()): DeviceRecord {
  return { name, ...(site === undefined ? {} : { site }), keys: [], tags: [], metadata: {}, source, firstSeen: now, state: { online: false, lastSeen: now, connections: 0 } };
}

/** Metadata keys operators set: tokens, so they read well in `fabric devices ls` and filters. */
export const METADATA_KEY = /^[a-z][a-z0-9_-]{0,31}$/;
/** At most this many metadata entries, each value at most 256 characters. */
export const MAX_METADATA_ENTRIES = 32;
