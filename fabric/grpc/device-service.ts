import { DeviceServiceService, type Device, type DeviceServiceServer, type Twin as ProtoTwin } from "../../proto/gen/fabric/v1/device.js";
import { deviceKey, DeviceRegistry, publishDelta, twinDelta, Twins, TwinError, type DeviceRecord, type Twin } from "../../devices/index.js";
import { DEVICES_BUCKET, TWINS_BUCKET } from "../../streams/index.js";
import { InvalidInputError, isToken } from "../core/index.js";
import { assertMayPublish, assertMayRead, mayRead, type GatewayContext } from "./context.js";
import { GatewayError } from "./errors.js";
import { unary } from "./handlers.js";

/** The request's site: empty for a device of no site. */
const siteOf = (site: string): string | undefined => (site === "" ? undefined : site);

function tokens(site: string, name: string | undefined): void {
  if (site !== "" && !isToken(site)) throw new InvalidInputError(`site ${JSON.stringify(site)} is not a fabric name`);
  if (name !== undefined && !isToken(name)) throw new InvalidInputError(`name ${JSON.stringify(name)} is not a fabric name`);
}

function deviceOf(d: DeviceRecord): Device {
  return {
    name: d.name,
    site: d.site ?? "",
    role: d.role ?? "",
    keys: d.keys,
    tags: d.tags,
    metadata: d.metadata,
    homie: d.homie ?? {},
    online: d.state.online,
    lastSeenMs: Math.round(d.state.lastSeen),
    protocol: d.state.protocol ?? "",
    connections: d.state.connections,
    firstSeenMs: Math.round(d.firstSeen),
    source: d.source,
  };
}

function twinOf(t: Twin): ProtoTwin {
  return { desiredJson: JSON.stringify(t.desired), reportedJson: JSON.stringify(t.reported), deltaJson: JSON.stringify(twinDelta(t.desired, t.reported)), version: t.version };
}

/** A twin's refusal as the gateway's: a stale version is a failed precondition, an oversized or malformed twin bad input. */
function twinRefusal(err: unknown): never {
  if (err instanceof TwinError) {
    if (err.code === "FABRIC_ERR_TWIN_VERSION_CONFLICT") throw new GatewayError("FABRIC_ERR_FAILED_PRECONDITION", err.message);
    throw new InvalidInputError(err.message);
  }
  throw err;
}

/** DeviceService: the device registry (KV devices) and twins (KV device_twins), as `fabric devices` shows them. */
export function deviceService(ctx: GatewayContext): DeviceServiceServer {
  const registry = DeviceRegistry.open(ctx.nc);
  const twins = Twins.open(ctx.nc);
  return {
    listDevices: unary(ctx, DeviceServiceService.listDevices.path, async (req, caller) => {
      tokens(req.site, undefined);
      const all = await (await registry).list(req.site === "" ? undefined : req.site);
      return { devices: all.filter((d) => mayRead(caller, `$KV.${DEVICES_BUCKET}.${deviceKey(d.name, d.site)}`)).map(deviceOf) };
    }),
    getDevice: unary(ctx, DeviceServiceService.getDevice.path, async (req, caller) => {
      tokens(req.site, req.name);
      const subject = `$KV.${DEVICES_BUCKET}.${deviceKey(req.name, siteOf(req.site))}`;
      assertMayRead(caller, subject);
      const d = await (await registry).get(req.name, siteOf(req.site));
      if (d === undefined) throw new GatewayError("FABRIC_ERR_NOT_FOUND", `no device ${req.site === "" ? "" : `${req.site}/`}${req.name} in the registry`);
      return { device: deviceOf(d) };
    }),
    getTwin: unary(ctx, DeviceServiceService.getTwin.path, async (req, caller) => {
      tokens(req.site, req.name);
      const subject = `$KV.${TWINS_BUCKET}.${deviceKey(req.name, siteOf(req.site))}`;
      assertMayRead(caller, subject);
      return { twin: twinOf(await (await twins).get(req.name, siteOf(req.site))) };
    }),
    updateDesired: unary(ctx, DeviceServiceService.updateDesired.path, async (req, caller) => {
      tokens(req.site, req.name);
      if (req.site === "") throw new InvalidInputError("site is required: a twin's delta goes to cmd.<site>.<name>");
      const subject = `$KV.${TWINS_BUCKET}.${deviceKey(req.name, siteOf(req.site))}`;
      assertMayPublish(caller, subject);
      let patch: unknown;
      try {
        patch = JSON.parse(req.patchJson);
      } catch {
        throw new InvalidInputError("patch_json is not JSON");
      }
      if (patch === null || typeof patch !== "object" || Array.isArray(patch)) throw new InvalidInputError("patch_json must be a JSON object");
      const t = await (await twins).updateDesired(req.name, req.site, patch as Record<string, unknown>, req.expectedVersion).catch(twinRefusal);
      publishDelta(ctx.nc, req.name, req.site, t);
      return { twin: twinOf(t) };
    }),
  };
}
