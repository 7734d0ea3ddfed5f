import { DeliverPolicy, jetstream } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { QueryServiceService, type Aggregate, type QueryServiceServer } from "../../proto/gen/fabric/v1/query.js";
import { LATEST_BUCKET } from "../../streams/index.js";
import { InvalidInputError, isToken } from "../core/index.js";
import { assertMaySubscribe, type GatewayContext } from "./context.js";
import { GatewayError } from "./errors.js";
import { serverStream, timeLeft, unary, write } from "./handlers.js";

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

/** QueryService: window aggregates from AGGREGATES and the latest value per key from KV agg_latest. */
export function queryService(ctx: GatewayContext): QueryServiceServer {
  const js = jetstream(ctx.nc);
  const latest = new Kvm(ctx.nc).open(LATEST_BUCKET);
  return {
    getLatest: unary(ctx, QueryServiceService.getLatest.path, async (req, caller) => {
      assertMaySubscribe(caller, subjectOf(req.window, req.key, false));
      const e = await (await latest).get(`${req.window}.${req.key}`);
      if (e === null || e.operation !== "PUT") throw new GatewayError("FABRIC_ERR_NOT_FOUND", `no result yet for ${req.key} in window ${req.window}`);
      return { aggregate: toAggregate(e.json(), 0) };
    }),

    getAggregates: unary(ctx, QueryServiceService.getAggregates.path, async (req, caller, call) => {
      const subject = subjectOf(req.window, req.key, false);
      assertMaySubscribe(caller, subject);
      const to = req.toMs === 0 ? Number.MAX_SAFE_INTEGER : req.toMs;
      if (to <= req.fromMs) throw new InvalidInputError("to_ms must be after from_ms (or 0 for now)");
      const limit = Math.min(req.limit === 0 ? MAX_RANGE_RESULTS : req.limit, MAX_RANGE_RESULTS);
      // a result is stored after its window started, so the stream from from_ms on holds every one in range
      const c = await js.consumers.get("AGGREGATES", { filter_subjects: [subject], deliver_policy: DeliverPolicy.StartTime, opt_start_time: new Date(Math.max(0, req.fromMs)).toISOString() });
      const byStart = new Map<number, Aggregate>();
      const deadline = Date.now() + timeLeft(call);
      for (;;) {
        const batch = await c.fetch({ max_messages: 1_000, expires: Math.max(1_000, Math.min(5_000, deadline - Date.now())) });
        let pending = 0;
        let got = 0;
        for await (const m of batch) {
          got++;
          pending = m.info.pending;
          const a = toAggregate(m.json(), m.seq);
          // the latest final or revision of each window (early results are superseded)
          if (a === undefined || a.kind === "early" || a.startMs < req.fromMs || a.startMs >= to) continue;
          const had = byStart.get(a.startMs);
          if (had === undefined || a.revision >= had.revision) byStart.set(a.startMs, a);
        }
        if (got === 0 || pending === 0 || Date.now() >= deadline) break;
      }
      return { aggregates: [...byStart.values()].sort((a, b) => a.startMs - b.startMs).slice(0, limit) };
    }),

    watchAggregates: serverStream(ctx, QueryServiceService.watchAggregates.path, async (req, caller, call, signal) => {
      const subject = subjectOf(req.window, req.key, true);
      assertMaySubscribe(caller, subject);
      const c = await js.consumers.get("AGGREGATES", { filter_subjects: [subject], deliver_policy: DeliverPolicy.New });
      const messages = await c.consume();
      signal.addEventListener("abort", () => void messages.close());
      for await (const m of messages) {
        const a = toAggregate(m.json(), m.seq);
        if (a !== undefined && !(await write(call, { aggregate: a }))) break;
      }
      await messages.close();
    }),
  };
}
