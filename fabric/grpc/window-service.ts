import { Kvm, type KV } from "@nats-io/kv";
import { parse as parseYaml } from "yaml";
import { WindowServiceService, type AddWindowRequest, type Window, type WindowServiceServer } from "../../proto/gen/fabric/v1/window.js";
import { DEFINITIONS_BUCKET, listDefinitions, removeDefinition, windowDefinitionSchema } from "../../streams/index.js";
import { errorMessage, InvalidInputError, isRevisionConflict, parseInput } from "../core/index.js";
import { assertMayPublish, assertMayRead, mayRead, type GatewayContext } from "./context.js";
import { GatewayError } from "./errors.js";
import { unary } from "./handlers.js";

/** The largest definition text AddWindow takes (window.proto states it). */
export const MAX_DEFINITION_BYTES = 65_536;

/** The subject writing a definition into KV takes: what a caller's permissions are checked against. */
function subjectOf(name: string): string {
  return `$KV.${DEFINITIONS_BUCKET}.${name}`;
}

/** A window name by the definition schema's own rule. */
function nameOf(name: string): string {
  return parseInput(windowDefinitionSchema.shape.name, name, "name");
}

/** AddWindow's text as a document: YAML is a superset of JSON, so one parser takes what the CLI takes. */
function documentOf(text: string): unknown {
  const bytes = Buffer.byteLength(text, "utf8");
  if (bytes > MAX_DEFINITION_BYTES) throw new InvalidInputError(`definition is ${bytes} bytes, more than ${MAX_DEFINITION_BYTES}`);
  try {
    return parseYaml(text);
  } catch (err) {
    throw new InvalidInputError(`definition is not valid JSON or YAML: ${errorMessage(err)}`);
  }
}

async function readWindow(kv: KV, name: string): Promise<Window | undefined> {
  const e = await kv.get(name);
  return e === null || e.operation !== "PUT" ? undefined : { name, definition: e.string(), revision: e.revision };
}

/** Stores `json` under `name` as the request says (create, replace, or compare-and-set); returns the revision. */
async function store(kv: KV, name: string, json: string, req: AddWindowRequest): Promise<number> {
  const expected = req.expectedRevision;
  try {
    if (req.replace) return await kv.put(name, json);
    return expected === undefined || expected === 0 ? await kv.create(name, json) : await kv.update(name, json, expected);
  } catch (err) {
    if (!isRevisionConflict(err)) throw err;
    const current = (await readWindow(kv, name))?.revision;
    if (current === undefined) throw new GatewayError("FABRIC_ERR_FAILED_PRECONDITION", `window ${name} does not exist (expected revision ${expected ?? 0})`);
    if (expected === undefined) throw new GatewayError("FABRIC_ERR_FAILED_PRECONDITION", `window ${name} exists (revision ${current}): set replace, or expected_revision ${current} to replace that revision`);
    throw new GatewayError("FABRIC_ERR_FAILED_PRECONDITION", `window ${name} is at revision ${current}, not ${expected}`);
  }
}

/** WindowService: window definitions in KV window_defs, managed as `fabric windows` does. */
export function windowService(ctx: GatewayContext): WindowServiceServer {
  const defs = new Kvm(ctx.nc).open(DEFINITIONS_BUCKET);
  return {
    addWindow: unary(ctx, WindowServiceService.addWindow.path, async (req, caller) => {
      if (req.replace && req.expectedRevision !== undefined) throw new InvalidInputError("set replace or expected_revision, not both");
      const def = parseInput(windowDefinitionSchema, documentOf(req.definition), "window");
      assertMayPublish(caller, subjectOf(def.name));
      const json = JSON.stringify(def);
      return { window: { name: def.name, definition: json, revision: await store(await defs, def.name, json, req) } };
    }),

    listWindows: unary(ctx, WindowServiceService.listWindows.path, async (_req, caller) => {
      const kv = await defs;
      const windows: Window[] = [];
      for (const d of await listDefinitions(ctx.nc)) {
        const w = mayRead(caller, subjectOf(d.name)) ? await readWindow(kv, d.name) : undefined;
        if (w !== undefined) windows.push(w);
      }
      return { windows };
    }),

    getWindow: unary(ctx, WindowServiceService.getWindow.path, async (req, caller) => {
      const name = nameOf(req.name);
      assertMayRead(caller, subjectOf(name));
      const window = await readWindow(await defs, name);
      if (window === undefined) throw new GatewayError("FABRIC_ERR_NOT_FOUND", `no window ${name}`);
      return { window };
    }),

    removeWindow: unary(ctx, WindowServiceService.removeWindow.path, async (req, caller) => {
      const name = nameOf(req.name);
      assertMayPublish(caller, subjectOf(name));
      if (!(await removeDefinition(ctx.nc, name))) throw new GatewayError("FABRIC_ERR_NOT_FOUND", `no window ${name}`);
      return {};
    }),
  };
}
