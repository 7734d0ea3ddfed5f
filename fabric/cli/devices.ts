import type { Command } from "commander";
import { FabricError, InvalidInputError, out, outJson, say } from "../core/index.js";
import { DeviceRegistry, publishDelta, twinDelta, Twins, type DeviceRecord } from "../../devices/index.js";
import { withConnection, withTenant, type ConnFlags } from "./tenant.js";

const ago = (ms: number, now = Date.now()): string => {
  const s = Math.max(0, Math.round((now - ms) / 1000));
  return s < 120 ? `${s} s ago` : s < 7_200 ? `${Math.round(s / 60)} min ago` : `${Math.round(s / 3_600)} h ago`;
};

export function renderDevices(devices: readonly DeviceRecord[]): string {
  if (devices.length === 0) return "no devices";
  return devices
    .map((d) => {
      const meta = Object.entries(d.metadata).map(([k, v]) => `${k}=${v}`).join(" ");
      return `${d.site ?? "-"}/${d.name}  ${d.state.online ? "ONLINE" : "offline"} (${d.state.protocol ?? "never connected"}, last seen ${ago(d.state.lastSeen)})  ${d.role ?? ""}  ${d.keys.length} key(s)${meta === "" ? "" : `  ${meta}`}`;
    })
    .join("\n");
}

/** A JSON object from the command line, or a clear error naming the flag. */
function jsonObject(text: string, flag: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new InvalidInputError(`${flag} is not JSON`);
  }
  if (v === null || typeof v !== "object" || Array.isArray(v)) throw new InvalidInputError(`${flag} must be a JSON object`);
  return v as Record<string, unknown>;
}

/** `fabric devices ls|describe|set|twin`: the device registry (KV `devices`) and twins (KV `device_twins`). */
export function addDeviceCommands(program: Command): void {
  const devices = program.command("devices").description("the device registry: every device issued, provisioned or seen, its metadata and live state");
  withConnection(devices.command("ls").description("devices, online or not, with their metadata").option("--site <site>", "only this site's").option("--json", "JSON output")).action(
    async (flags: ConnFlags & { site?: string; json?: boolean }) => {
      await withTenant(flags, async (nc) => {
        const list = await (await DeviceRegistry.open(nc)).list(flags.site);
        if (flags.json === true) outJson(list);
        else out(renderDevices(list));
      });
    },
  );
  withConnection(devices.command("describe <name>").description("one device's registry entry").option("--site <site>", "its site").option("--json", "JSON output")).action(
    async (name: string, flags: ConnFlags & { site?: string; json?: boolean }) => {
      await withTenant(flags, async (nc) => {
        const d = await (await DeviceRegistry.open(nc)).get(name, flags.site);
        if (d === undefined) throw new FabricError("FABRIC_ERR_NOT_FOUND", `no device ${flags.site === undefined ? "" : `${flags.site}/`}${name} in the registry`);
        if (flags.json === true) outJson(d);
        else out(`${renderDevices([d])}\n${JSON.stringify(d, null, 2)}`);
      });
    },
  );
  withConnection(
    devices
      .command("set <name>")
      .description("set a device's metadata (model, firmware, location, or any key=value); key= removes a key")
      .option("--site <site>", "its site")
      .option("--model <model>")
      .option("--firmware <version>")
      .option("--location <location>")
      .option("--meta <key=value...>", "other metadata"),
  ).action(async (name: string, flags: ConnFlags & { site?: string; model?: string; firmware?: string; location?: string; meta?: string[] }) => {
    const entries: Record<string, string | null> = {};
    for (const k of ["model", "firmware", "location"] as const) {
      const v = flags[k];
      if (v !== undefined) entries[k] = v;
    }
    for (const kv of flags.meta ?? []) {
      const at = kv.indexOf("=");
      if (at <= 0) throw new InvalidInputError(`--meta ${JSON.stringify(kv)}: give key=value (key= removes it)`);
      const v = kv.slice(at + 1);
      entries[kv.slice(0, at)] = v === "" ? null : v;
    }
    if (Object.keys(entries).length === 0) throw new InvalidInputError("nothing to set: give --model, --firmware, --location or --meta key=value");
    await withTenant(flags, async (nc) => {
      const d = await (await DeviceRegistry.open(nc)).setMetadata(name, flags.site, entries);
      say(`device ${d.site ?? "-"}/${d.name}: ${Object.entries(d.metadata).map(([k, v]) => `${k}=${v}`).join(" ") || "no metadata"}`);
    });
  });
  withConnection(
    devices
      .command("twin <name>")
      .description("a device's twin: desired, reported, the delta and the version; --desired sets desired (a JSON merge patch: null removes a key)")
      .requiredOption("--site <site>", "its site")
      .option("--desired <json>", "a merge patch of desired state, e.g. '{\"mode\":\"eco\"}'")
      .option("--expected-version <n>", "refuse unless the twin is at this version (optimistic concurrency)")
      .option("--json", "JSON output"),
  ).action(async (name: string, flags: ConnFlags & { site: string; desired?: string; expectedVersion?: string; json?: boolean }) => {
    const patch = flags.desired === undefined ? undefined : jsonObject(flags.desired, "--desired");
    const expected = flags.expectedVersion === undefined ? undefined : Number(flags.expectedVersion);
    if (expected !== undefined && (!Number.isInteger(expected) || expected < 0)) throw new InvalidInputError("--expected-version must be a whole number");
    await withTenant(flags, async (nc) => {
      const twins = await Twins.open(nc);
      const twin = patch === undefined ? await twins.get(name, flags.site) : await twins.updateDesired(name, flags.site, patch, expected);
      if (patch !== undefined) {
        publishDelta(nc, name, flags.site, twin);
        await nc.flush();
      }
      const shown = { ...twin, delta: twinDelta(twin.desired, twin.reported) };
      if (flags.json === true) outJson(shown);
      else out(JSON.stringify(shown, null, 2));
    });
  });
}
