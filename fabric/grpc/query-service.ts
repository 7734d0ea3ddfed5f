import { DeliverPolicy, jetstream } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { QueryServiceService, type Aggregate, type QueryServiceServer } from "../../proto/gen/fabric/v1/query.js";
import { DEFINITIONS_BUCKET, LATEST_BUCKET } from "../../streams/index.js";
import { InvalidInputError, isToken } from "../core/index.js";
import { assertMaySubscribe, type GatewayContext } from "./context.js";
import { GatewayError } from "./errors.js";
import { serverStream, timeLeft, unary, write } from "./handlers.js";
import { readRange } from "./stream-range.js";

const MAX_RANGE_RESULTS = 10_000;
/** Fields of a window result that are not aggregate values. */
const RESULT_FIELDS = new Set(["window", "key", "start", "end", "revision", "kind", "count", "empty", "states"]);

/** A window result message (streams/worker.ts) as an Aggregate. */
export function toAggregate(body: unknown, sequence: number): Aggregate | undefined {
  if (typeof body !== "object" || body === null) return undefined;
  const r = body as Record<string, unknown>;
  const num = (k: string): number => (typeof r[k] === "number" ? r[k] : 0);
  const str = (k: string): string => (typeof r[k] === "string" ? r[k] : "");
  const values: Record<string, number> = {};
  for (const [k, v] of Object.entries(r)) if (!RESULT_FIELDS.has(k) && typeof v === "number") values[k] = v;
  return { window: str("window"), key: str("key"), startMs: num("start"), endMs: num("end"), revision: num("revision"), kind: str("kind"), count: num("count"), values, sequence };
}

/** A stored message's JSON body, or undefined when it is none (nothing in AGGREGATES should be, but a reader never trusts that). */
function jsonOf(m: { json(): unknown }): unknown {
  try {
    return m.json();
  } catch {
    return undefined;
  }
}

/** `window` a token, `key` dot-separated tokens (with `*` for one where patterns are allowed). */
function subjectOf(window: string, key: string, patterns: boolean): string {
  if (!isToken(window)) throw new InvalidInputError(`window ${JSON.stringify(window)} is not a window name`);
  if (key === "") {
    if (!patterns) throw new InvalidInputError("key is required");
    return `agg.${window}.>`;
  }
  for (const t of key.split(".")) if (!(isToken(t) || (patterns && t === "*"))) throw new InvalidInputError(`key ${JSON.stringify(key)} is not site.device.metric tokens${patterns ? " (or * for one)" : ""}`);
  return `agg.${window}.${key}`;
}

/**
 * QueryService: window aggregates from AGGREGATES and the latest value per key from KV agg_latest. A window
 * that is not defined (KV window_defs) is NOT_FOUND for every method alike.
 */
export function queryService(ctx: GatewayContext): QueryServiceServer {
  const js = jetstream(ctx.nc);
  const kvm = new Kvm(ctx.nc);
  const latest = kvm.open(LATEST_BUCKET);
  const definitions = kvm.open(DEFINITIONS_BUCKET);
  const assertWindowDefined = async (window: string): Promise<void> => {
    const e = await (await definitions).get(window);
    if (e === null || e.operation !== "PUT") throw new GatewayError("FABRIC_ERR_NOT_FOUND", `no window ${window} is defined (fabric windows ls)`);
  };
  return {
    getLatest: unary(ctx, QueryServiceService.getLatest.path, async (req, caller) => {
      assertMaySubscribe(caller, subjectOf(req.window, req.key, false));
      await assertWindowDefined(req.window);
      const e = await (await latest).get(`${req.window}.${req.key}`);
      if (e === null || e.operation !== "PUT") throw new GatewayError("FABRIC_ERR_NOT_FOUND", `no result yet for ${req.key} in window ${req.window}`);
      return { aggregate: toAggregate(jsonOf(e), 0) };
    }),

    getAggregates: unary(ctx, QueryServiceService.getAggregates.path, async (req, caller, call) => {
      const subject = subjectOf(req.window, req.key, false);
      assertMaySubscribe(caller, subject);
      const to = req.toMs === 0 ? Number.MAX_SAFE_INTEGER : req.toMs;
      if (to <= req.fromMs) throw new InvalidInputError("to_ms must be after from_ms (or 0 for now)");
      if (req.limit > MAX_RANGE_RESULTS) throw new InvalidInputError(`limit must be at most ${MAX_RANGE_RESULTS} (or 0 for ${MAX_RANGE_RESULTS})`);
      const limit = req.limit === 0 ? MAX_RANGE_RESULTS : req.limit;
      await assertWindowDefined(req.window);
      // a result is stored after its window started, so the stream from from_ms on holds every one in range;
      // what it holds is read as it stands now, and the call answers as soon as that is read
      const byStart = new Map<number, Aggregate>();
      const start = { deliver_policy: DeliverPolicy.StartTime, opt_start_time: new Date(Math.max(0, req.fromMs)).toISOString() };
      await readRange(ctx.nc, await ctx.jsm(), { stream: "AGGREGATES", filter: subject, start, deadline: Date.now() + timeLeft(call) }, (m) => {
        const a = toAggregate(jsonOf(m), m.seq);
        // the latest final or revision of each window (early results are superseded)
        if (a === undefined || a.kind === "early" || a.startMs < req.fromMs || a.startMs >= to) return false;
        const had = byStart.get(a.startMs);
        if (had === undefined || a.revision >= had.revision) byStart.set(a.startMs, a);
        return false;
      });
      return { aggregates: [...byStart.values()].sort((a, b) => a.startMs - b.startMs).slice(0, limit) };
    }),

    watchAggregates: serverStream(ctx, QueryServiceService.watchAggregates.path, async (req, caller, call, signal) => {
      const subject = subjectOf(req.window, req.key, true);
      assertMaySubscribe(caller, subject);
      await assertWindowDefined(req.window);
      const c = await js.consumers.get("AGGREGATES", { filter_subjects: [subject], deliver_policy: DeliverPolicy.New });
      const messages = await c.consume();
      signal.addEventListener("abort", () => void messages.close());
      for await (const m of messages) {
        const a = toAggregate(jsonOf(m), m.seq);
        if (a !== undefined && !(await write(call, { aggregate: a }))) break;
      }
      await messages.close();
    }),
  };
}
