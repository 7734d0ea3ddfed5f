import { DeliverPolicy, jetstream, type JsMsg } from "@nats-io/jetstream";
import { headers as natsHeaders, nuid, type Msg, type MsgHdrs } from "@nats-io/transport-node";
import { z } from "zod";
import { CommandServiceService, CommandState, type CommandServiceServer, type SendCommandResponse, type WatchCommandResponse } from "../../proto/gen/fabric/v1/command.js";
import { COMMAND_KEYS_TTL_MS } from "../../streams/index.js";
import { assertToken, continueTrace, endWhenSettled, InvalidInputError, isToken, SPAN, SpanKind, tracingEnabled } from "../core/index.js";
import { CommandKeys, commandKeyOf, fingerprintOf, type CommandKeyRecord } from "./command-keys.js";
import { assertMayPublish, assertMaySubscribe, type GatewayContext } from "./context.js";
import { GatewayError } from "./errors.js";
import { serverStream, timeLeft, unary, write } from "./handlers.js";
import { assertFits, assertIdempotencyKey } from "./input.js";
import { readRange } from "./stream-range.js";
import { traceFromCall } from "./tracing.js";

/** The header a command carries its id in (`<site>.<device>.<ms>-<unique>`): the device echoes it in its acknowledgement. */
export const COMMAND_ID_HEADER = "Fabric-Command-Id";
/** Where a device acknowledges: `events.<site>.<device>.cmd-ack`, JSON {"command": id, "ok": bool, "detail"?: any JSON}. */
export const COMMAND_ACK_TYPE = "cmd-ack";
/**
 * A send under an idempotency key that neither finished nor failed this long after it began (its gateway died
 * mid-send) is taken over by the next send with the key. Longer than a publish may take (5 s).
 */
export const COMMAND_TAKEOVER_MS = 10_000;
/** How often a send waits to see whether another send of the same key has finished. */
const KEY_POLL_MS = 50;
/** A waiting send gives up this long before the call's deadline, so the caller hears why (UNAVAILABLE), not only DEADLINE_EXCEEDED. */
const KEY_GIVE_UP_MARGIN_MS = 250;
/** A device's clock, the gateway's and the server's may differ by this much: commands are looked for from this long before their id's time. */
const CLOCK_SKEW_MS = 5_000;

const ackSchema = z.object({ command: z.string(), ok: z.boolean(), detail: z.unknown().optional() });

/** `<site>.<device>.<sent at ms>-<unique>`: where the command went, and from when to look for it and its ack. */
function parseCommandId(id: string): { site: string; device: string; sentAt: number } {
  const parts = id.split(".");
  const [site = "", device = "", tail = ""] = parts;
  const m = /^(\d{1,15})-[A-Za-z0-9]{8,32}$/.exec(tail);
  if (parts.length !== 3 || !isToken(site) || !isToken(device) || m === null) throw new InvalidInputError(`command_id ${JSON.stringify(id.slice(0, 200))} is not <site>.<device>.<ms>-<id> (as SendCommand returns it)`);
  return { site, device, sentAt: Number(m[1]) };
}

const storedAtMs = (m: JsMsg): number => Math.floor(Number(m.info.timestampNanos) / 1e6);

/**
 * What a device's acknowledgement says about `commandId`: undefined when it is about another command; a
 * malformed one about this command (by its `command` field or its Fabric-Command-Id header) is FAILED with the
 * reason, never ignored. `detail` is carried as bytes: a string as its UTF-8, any other JSON as its JSON text.
 */
export function readCommandAck(m: Pick<Msg, "data" | "headers">, commandId: string): Pick<WatchCommandResponse, "state" | "detail" | "error"> | undefined {
  let body: unknown;
  try {
    body = JSON.parse(Buffer.from(m.data).toString("utf8"));
  } catch {
    body = undefined;
  }
  const about = (typeof body === "object" && body !== null && (body as { command?: unknown }).command === commandId) || m.headers?.get(COMMAND_ID_HEADER) === commandId;
  if (!about) return undefined;
  const a = ackSchema.safeParse(body);
  if (!a.success) {
    const issue = a.error.issues[0];
    const why = body === undefined ? "it is not JSON" : `${issue?.path.join(".") || "the body"}: ${issue?.message ?? "invalid"}`;
    return { state: CommandState.COMMAND_STATE_FAILED, detail: Buffer.from(m.data), error: `malformed acknowledgement (${why}); expected {"command": id, "ok": boolean, "detail"?: any JSON}` };
  }
  const d = a.data.detail;
  return { state: a.data.ok ? CommandState.COMMAND_STATE_ACKED : CommandState.COMMAND_STATE_FAILED, detail: d === undefined ? Buffer.alloc(0) : Buffer.from(typeof d === "string" ? d : JSON.stringify(d)), error: "" };
}

/**
 * CommandService: commands into COMMANDS, and their status until the device acknowledges.
 *
 * An idempotency key sends a command once: the key is claimed in KV `cmd_keys` (compare-and-set) before
 * anything is published, so a repeat reaches no device (a live subscriber sees every publish, also one that
 * JetStream's deduplication then drops) and gets the original command's id. A repeat while the first send is
 * under way waits for it; a send whose gateway died mid-way is taken over after COMMAND_TAKEOVER_MS, after
 * looking in COMMANDS whether it was stored.
 */
export function commandService(ctx: GatewayContext): CommandServiceServer {
  const js = jetstream(ctx.nc);
  const keys = new CommandKeys(ctx.nc);
  const jsm = ctx.jsm;

  /** The stored command with this id, looked for from `fromMs` on: its sequence, or undefined. */
  const findCommand = async (subject: string, commandId: string, fromMs: number, deadline: number): Promise<JsMsg | undefined> => {
    let found: JsMsg | undefined;
    await readRange(ctx.nc, await jsm(), { stream: "COMMANDS", filter: subject, start: { deliver_policy: DeliverPolicy.StartTime, opt_start_time: new Date(Math.max(0, fromMs)).toISOString() }, deadline }, (m) => {
      if (m.headers?.get(COMMAND_ID_HEADER) !== commandId) return false;
      found = m;
      return true;
    });
    return found;
  };

  /** `h`: the command's headers besides its id (the caller's trace context). */
  const publishCommand = async (subject: string, payload: Uint8Array, commandId: string, msgId: string, h: MsgHdrs): Promise<{ sequence: number; commandId: string; duplicate: boolean }> => {
    h.set(COMMAND_ID_HEADER, commandId);
    const ack = await ctx.publisher.publish(subject, payload, { msgId, headers: h });
    if (!ack.duplicate) return { sequence: ack.seq, commandId, duplicate: false };
    // stored before under this message id: the stored command's id is the one
    const stored = await (await jsm()).streams.getMessage("COMMANDS", { seq: ack.seq });
    return { sequence: ack.seq, commandId: stored?.header.get(COMMAND_ID_HEADER) || commandId, duplicate: true };
  };

  /** Sends under an idempotency key: the key's own send publishes, every repeat answers from the record. */
  const sendKeyed = async (subject: string, payload: Uint8Array, kvKey: string, fingerprint: string, deadline: number, h: MsgHdrs): Promise<SendCommandResponse> => {
    const [, site = "", device = ""] = subject.split(".");
    const msgId = `cmd.${kvKey}`;
    /** Publishes as the holder of the key at `revision`, recording the outcome for the repeats. */
    const send = async (record: CommandKeyRecord, revision: number): Promise<SendCommandResponse> => {
      let r;
      try {
        r = await publishCommand(subject, payload, record.commandId, msgId, h);
      } catch (err) {
        await keys.update(kvKey, { ...record, failed: true }, revision).catch(() => undefined);
        throw err;
      }
      await keys.update(kvKey, { ...record, commandId: r.commandId, sequence: r.sequence }, revision).catch(() => undefined);
      return r;
    };
    for (;;) {
      const mine: CommandKeyRecord = { commandId: `${site}.${device}.${Date.now()}-${nuid.next()}`, fingerprint, startedAt: Date.now() };
      const claimed = await keys.claim(kvKey, mine);
      if (claimed !== undefined) return send(mine, claimed);
      const held = await keys.get(kvKey);
      if (held === undefined) continue; // expired or dropped meanwhile: claim it
      const { record, revision } = held;
      if (record.fingerprint !== fingerprint) {
        throw new GatewayError("FABRIC_ERR_IDEMPOTENCY_CONFLICT", `idempotency_key was used for another command to ${site}.${device} (another name or payload) within the last ${COMMAND_KEYS_TTL_MS / 60_000} min: use a new key`);
      }
      if (record.sequence !== undefined) return { commandId: record.commandId, sequence: record.sequence, duplicate: true };
      if (record.failed === true || Date.now() - record.startedAt > COMMAND_TAKEOVER_MS) {
        const taken = { ...record, startedAt: Date.now(), failed: false };
        const rev = await keys.update(kvKey, taken, revision);
        if (rev === undefined) continue; // another repeat took it over first
        // the failed send may have been stored all the same (its acknowledgement was lost)
        const stored = await findCommand(subject, record.commandId, parseCommandId(record.commandId).sentAt - CLOCK_SKEW_MS, deadline);
        if (stored === undefined) return send(taken, rev);
        await keys.update(kvKey, { ...taken, sequence: stored.seq }, rev).catch(() => undefined);
        return { commandId: record.commandId, sequence: stored.seq, duplicate: true };
      }
      if (Date.now() + KEY_POLL_MS + KEY_GIVE_UP_MARGIN_MS >= deadline) throw new GatewayError("FABRIC_ERR_UNAVAILABLE", "a command with this idempotency key is being sent by another call: retry to learn its outcome");
      await new Promise((r) => setTimeout(r, KEY_POLL_MS));
    }
  };

  return {
    sendCommand: unary(ctx, CommandServiceService.sendCommand.path, async (req, caller, call) => {
      assertToken(req.site, "site");
      assertToken(req.device, "device");
      assertToken(req.name, "name");
      assertIdempotencyKey(req.idempotencyKey);
      const h = natsHeaders();
      assertFits(ctx.nc, req.payload.length, 160 + traceFromCall(call.metadata, h), "payload");
      const subject = `cmd.${req.site}.${req.device}.${req.name}`;
      assertMayPublish(caller, subject);
      const deadline = Date.now() + timeLeft(call);
      const span = tracingEnabled() ? continueTrace(h, SPAN.commandSend, subject, SpanKind.PRODUCER, { "rpc.system": "grpc", "fabric.caller": caller.name }) : undefined;
      if (req.idempotencyKey !== "") return endWhenSettled(span, sendKeyed(subject, req.payload, commandKeyOf(req.site, req.device, req.idempotencyKey), fingerprintOf(req.name, req.payload), deadline, h));
      const id = `${req.site}.${req.device}.${Date.now()}-${nuid.next()}`;
      return endWhenSettled(span, publishCommand(subject, req.payload, id, id, h));
    }),

    watchCommand: serverStream(ctx, CommandServiceService.watchCommand.path, async (req, caller, call, signal) => {
      const { site, device, sentAt } = parseCommandId(req.commandId);
      const ackSubject = `events.${site}.${device}.${COMMAND_ACK_TYPE}`;
      assertMaySubscribe(caller, ackSubject);
      assertMaySubscribe(caller, `cmd.${site}.${device}.>`);
      const from = sentAt - CLOCK_SKEW_MS;
      const cmd = await findCommand(`cmd.${site}.${device}.>`, req.commandId, from, Date.now() + 30_000);
      if (cmd === undefined) throw new GatewayError("FABRIC_ERR_NOT_FOUND", `no command ${req.commandId}`);
      if (!(await write(call, { commandId: req.commandId, state: CommandState.COMMAND_STATE_STORED, detail: Buffer.alloc(0), atMs: storedAtMs(cmd), error: "" }))) return;
      const c = await js.consumers.get("EVENTS", { filter_subjects: [ackSubject], deliver_policy: DeliverPolicy.StartTime, opt_start_time: new Date(from).toISOString() });
      const messages = await c.consume();
      signal.addEventListener("abort", () => void messages.close());
      for await (const m of messages) {
        const r = readCommandAck(m, req.commandId);
        if (r === undefined) continue;
        await write(call, { commandId: req.commandId, ...r, atMs: storedAtMs(m) });
        break;
      }
      await messages.close();
    }),
  };
}
