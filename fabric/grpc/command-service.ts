import { DeliverPolicy, jetstream, jetstreamManager, type JsMsg } from "@nats-io/jetstream";
import { headers as natsHeaders, nuid } from "@nats-io/transport-node";
import { z } from "zod";
import { CommandServiceService, CommandState, type CommandServiceServer } from "../../proto/gen/fabric/v1/command.js";
import { InvalidInputError, isToken } from "../core/index.js";
import { assertMayPublish, assertMaySubscribe, type GatewayContext } from "./context.js";
import { GatewayError } from "./errors.js";
import { serverStream, unary, write } from "./handlers.js";

/** The header a command carries its id in (`<site>.<device>.<ms>-<unique>`): the device echoes it in its acknowledgement. */
export const COMMAND_ID_HEADER = "Fabric-Command-Id";
/** Where a device acknowledges: `events.<site>.<device>.cmd-ack`, JSON {"command": id, "ok": bool, "detail"?: string}. */
export const COMMAND_ACK_TYPE = "cmd-ack";
const ackSchema = z.object({ command: z.string(), ok: z.boolean(), detail: z.string().optional() });

/** `<site>.<device>.<sent at ms>-<unique>`: where the command went, and from when to look for it and its ack. */
function parseCommandId(id: string): { site: string; device: string; sentAt: number } {
  const parts = id.split(".");
  const [site = "", device = "", tail = ""] = parts;
  const m = /^(\d{1,15})-[A-Za-z0-9]{8,32}$/.exec(tail);
  if (parts.length !== 3 || !isToken(site) || !isToken(device) || m === null) throw new InvalidInputError(`command_id ${JSON.stringify(id)} is not <site>.<device>.<ms>-<id> (as SendCommand returns it)`);
  return { site, device, sentAt: Number(m[1]) };
}

/** A consumer's messages from a time on, until it has caught up (pending 0) or `until` says stop. */
async function scan(js: ReturnType<typeof jetstream>, stream: string, subject: string, fromMs: number, until: (m: JsMsg) => boolean): Promise<JsMsg | undefined> {
  const c = await js.consumers.get(stream, { filter_subjects: [subject], deliver_policy: DeliverPolicy.StartTime, opt_start_time: new Date(fromMs).toISOString() });
  for (;;) {
    let last: JsMsg | undefined;
    for await (const m of await c.fetch({ max_messages: 500, expires: 1_000 })) {
      last = m;
      if (until(m)) return m;
    }
    if (last === undefined || last.info.pending === 0) return undefined;
  }
}

/** CommandService: commands into COMMANDS (once per idempotency key), and their status until the device acknowledges. */
export function commandService(ctx: GatewayContext): CommandServiceServer {
  const js = jetstream(ctx.nc);
  return {
    sendCommand: unary(ctx, CommandServiceService.sendCommand.path, async (req, caller) => {
      for (const [field, v] of [["site", req.site], ["device", req.device], ["name", req.name]] as const) if (!isToken(v)) throw new InvalidInputError(`${field} ${JSON.stringify(v)} is not a token (lowercase letters, digits, '_' and '-')`);
      const subject = `cmd.${req.site}.${req.device}.${req.name}`;
      assertMayPublish(caller, subject);
      const id = `${req.site}.${req.device}.${Date.now()}-${nuid.next()}`;
      const h = natsHeaders();
      h.set(COMMAND_ID_HEADER, id);
      const ack = await ctx.publisher.publish(subject, req.payload, { msgId: req.idempotencyKey === "" ? id : req.idempotencyKey, headers: h });
      if (!ack.duplicate) return { commandId: id, sequence: ack.seq, duplicate: false };
      // sent before under this idempotency key: the stored command's id is the one
      const stored = await (await jetstreamManager(ctx.nc)).streams.getMessage("COMMANDS", { seq: ack.seq });
      return { commandId: stored?.header.get(COMMAND_ID_HEADER) ?? id, sequence: ack.seq, duplicate: true };
    }),

    watchCommand: serverStream(ctx, CommandServiceService.watchCommand.path, async (req, caller, call, signal) => {
      const { site, device, sentAt } = parseCommandId(req.commandId);
      const ackSubject = `events.${site}.${device}.${COMMAND_ACK_TYPE}`;
      assertMaySubscribe(caller, ackSubject);
      assertMaySubscribe(caller, `cmd.${site}.${device}.>`);
      // a little before the id's time: the gateway's and the server's clocks may differ by that
      const from = sentAt - 5_000;
      const cmd = await scan(js, "COMMANDS", `cmd.${site}.${device}.>`, from, (m) => m.headers?.get(COMMAND_ID_HEADER) === req.commandId);
      if (cmd === undefined) throw new GatewayError("FABRIC_ERR_NOT_FOUND", `no command ${req.commandId}`);
      if (!(await write(call, { commandId: req.commandId, state: CommandState.COMMAND_STATE_STORED, detail: Buffer.alloc(0), atMs: Math.floor(Number(cmd.info.timestampNanos) / 1e6) }))) return;
      const c = await js.consumers.get("EVENTS", { filter_subjects: [ackSubject], deliver_policy: DeliverPolicy.StartTime, opt_start_time: new Date(from).toISOString() });
      const messages = await c.consume();
      signal.addEventListener("abort", () => void messages.close());
      for await (const m of messages) {
        let body: unknown;
        try {
          body = m.json();
        } catch {
          continue;
        }
        const a = ackSchema.safeParse(body);
        if (!a.success || a.data.command !== req.commandId) continue;
        await write(call, { commandId: req.commandId, state: a.data.ok ? CommandState.COMMAND_STATE_ACKED : CommandState.COMMAND_STATE_FAILED, detail: Buffer.from(a.data.detail ?? ""), atMs: Math.floor(Number(m.info.timestampNanos) / 1e6) });
        break;
      }
      await messages.close();
    }),
  };
}
