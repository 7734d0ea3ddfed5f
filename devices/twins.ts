import { Kvm, type KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { isDeepStrictEqual } from "node:util";
import { z } from "zod";
import { FabricError } from "../fabric/core/index.js";
import { casUpdate } from "./kv-cas.js";
import { TWINS_BUCKET } from "../streams/index.js";
import { deviceKey } from "./record.js";

/** A twin (desired and reported state together, as JSON) is at most this large: AWS's shadow limit. */
export const MAX_TWIN_BYTES = 8 * 1024;

export const twinSubjects = {
  /** What a device publishes to report its state (`{"state": {"reported": {…}}}`); stored in EVENTS too. */
  report: (site: string, name: string): string => `events.${site}.${name}.twin-report`,
  allReports: "events.*.*.twin-report",
  /** Where the twin answers a device, and tells it what desired differs from reported: its command subjects. */
  accepted: (site: string, name: string): string => `cmd.${site}.${name}.twin.accepted`,
  rejected: (site: string, name: string): string => `cmd.${site}.${name}.twin.rejected`,
  delta: (site: string, name: string): string => `cmd.${site}.${name}.twin.delta`,
} as const;

const stateObject = z.record(z.string(), z.unknown());
export const twinSchema = z.strictObject({
  desired: stateObject,
  reported: stateObject,
  version: z.number().int().min(0),
  desiredAt: z.number().optional(),
  reportedAt: z.number().optional(),
});
export type Twin = z.infer<typeof twinSchema>;

export const reportSchema = z.strictObject({ state: z.strictObject({ reported: stateObject }), version: z.number().int().min(0).optional() });

export class TwinError extends FabricError {
  constructor(code: "FABRIC_ERR_TWIN_VERSION_CONFLICT" | "FABRIC_ERR_TWIN_TOO_LARGE" | "FABRIC_ERR_TWIN_INVALID", message: string) {
    super(code, message);
  }
}

/** JSON merge patch (RFC 7386): objects merge, null removes, anything else replaces. */
function mergePatch(target: Record<string, unknown>, patch: Record<string, unknown>): Record<string, unknown> {
  const out = { ...target };
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else if (typeof v === "object" && !Array.isArray(v) && typeof out[k] === "object" && out[k] !== null && !Array.isArray(out[k])) {
      out[k] = mergePatch(out[k] as Record<string, unknown>, v as Record<string, unknown>);
    } else if (typeof v === "object" && !Array.isArray(v)) out[k] = mergePatch({}, v as Record<string, unknown>);
    else out[k] = v;
  }
  return out;
}

/** What desired holds that reported does not (deeply): the delta a device is sent. */
export function twinDelta(desired: Record<string, unknown>, reported: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(desired)) {
    const r = reported[k];
    if (v !== null && typeof v === "object" && !Array.isArray(v) && r !== null && typeof r === "object" && !Array.isArray(r)) {
      const d = twinDelta(v as Record<string, unknown>, r as Record<string, unknown>);
      if (Object.keys(d).length > 0) out[k] = d;
    } else if (!isDeepStrictEqual(v, r)) out[k] = v;
  }
  return out;
}

const empty = (): Twin => ({ desired: {}, reported: {}, version: 0 });

/**
 * Device twins (KV `device_twins`), AWS-shadow-like: desired state set by operators and services, reported
 * state by the device, one version for the document that every change raises; a change may name the version
 * it expects (optimistic concurrency). A twin is at most 8 KiB of JSON.
 */
export class Twins {
  private constructor(private readonly kv: KV) {}

  static async open(nc: NatsConnection): Promise<Twins> {
    return new Twins(await new Kvm(nc).open(TWINS_BUCKET));
  }

  async get(name: string, site: string | undefined): Promise<Twin> {
    const e = await this.kv.get(deviceKey(name, site));
    if (e === null || e.operation !== "PUT") return empty();
    const t = twinSchema.safeParse(e.json());
    return t.success ? t.data : empty();
  }

  private async change(name: string, site: string | undefined, expectedVersion: number | undefined, fn: (t: Twin) => Twin): Promise<Twin> {
    const what = `twin of ${site ?? "-"}/${name}`;
    return casUpdate(
      this.kv,
      deviceKey(name, site),
      (e) => {
        const held = e === undefined ? undefined : twinSchema.safeParse(e.json());
        return held?.success === true ? held.data : empty();
      },
      (current) => {
        if (expectedVersion !== undefined && expectedVersion !== current.version) {
          throw new TwinError("FABRIC_ERR_TWIN_VERSION_CONFLICT", `${what} is at version ${current.version}, not ${expectedVersion}: read it again and retry`);
        }
        const next = { ...fn(current), version: current.version + 1 };
        const size = Buffer.byteLength(JSON.stringify({ desired: next.desired, reported: next.reported }));
        if (size > MAX_TWIN_BYTES) throw new TwinError("FABRIC_ERR_TWIN_TOO_LARGE", `${what} would be ${size} bytes: at most ${MAX_TWIN_BYTES}`);
        return next;
      },
      () => {
        if (expectedVersion !== undefined) throw new TwinError("FABRIC_ERR_TWIN_VERSION_CONFLICT", `${what} changed meanwhile: read it again and retry`);
      },
    );
  }

  /** Operators and services: a merge patch of desired (null removes a key). */
  async updateDesired(name: string, site: string | undefined, patch: Record<string, unknown>, expectedVersion?: number): Promise<Twin> {
    return this.change(name, site, expectedVersion, (t) => ({ ...t, desired: mergePatch(t.desired, patch), desiredAt: Date.now() }));
  }

  /** The device: a merge patch of reported. */
  async updateReported(name: string, site: string | undefined, patch: Record<string, unknown>, expectedVersion?: number): Promise<Twin> {
    return this.change(name, site, expectedVersion, (t) => ({ ...t, reported: mergePatch(t.reported, patch), reportedAt: Date.now() }));
  }
}

/** Tells the device what desired holds that reported does not (on its command subjects; COMMANDS keeps it). */
export function publishDelta(nc: NatsConnection, name: string, site: string, twin: Twin): boolean {
  const delta = twinDelta(twin.desired, twin.reported);
  if (Object.keys(delta).length === 0) return false;
  nc.publish(twinSubjects.delta(site, name), JSON.stringify({ state: delta, version: twin.version }));
  return true;
}
