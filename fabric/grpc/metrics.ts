import { ServerInterceptingCall, status, type ServerInterceptor } from "@grpc/grpc-js";
import { counter, gauge, histogram } from "../core/index.js";

/**
 * The gRPC gateway's metrics: every call by method and status code (a server interceptor), open streams,
 * and what Consume streams deliver and settle. Process-wide: every gateway of the process adds to them.
 */

const calls = counter<"method" | "code">({ name: "fabric_grpc_calls_total", help: "gRPC calls ended, by method (service/method) and status code", labelNames: ["method", "code"] });
const duration = histogram<"method">({ name: "fabric_grpc_call_duration_seconds", help: "duration of unary gRPC calls, by method", labelNames: ["method"] });
const openStreams = gauge<"method">({ name: "fabric_grpc_open_streams", help: "streaming gRPC calls open now, by method", labelNames: ["method"] });
const deliveries = counter<"stream">({ name: "fabric_grpc_consume_deliveries_total", help: "messages delivered to Consume streams, by JetStream stream", labelNames: ["stream"] });
const redeliveries = counter<"stream">({ name: "fabric_grpc_consume_redeliveries_total", help: "deliveries to Consume streams that were redeliveries (delivery count above 1)", labelNames: ["stream"] });
const settlements = counter<"kind">({
  name: "fabric_grpc_consume_settlements_total",
  help: "settlements received on Consume streams, by kind (ack, nack, in_progress, terminate; refused: unknown kind or stale token)",
  labelNames: ["kind"],
});

const CODE_NAMES: ReadonlyMap<number, string> = new Map(Object.entries(status).flatMap(([k, v]) => (typeof v === "number" ? [[v, k] as const] : [])));

/** Counts every call by method and code; open streams while they run. */
export const metricsInterceptor: ServerInterceptor = (method, call) => {
  const name = method.path.replace(/^\//, "");
  const streaming = method.requestStream || method.responseStream;
  const started = performance.now();
  let ended = false;
  if (streaming) openStreams.inc({ method: name });
  const end = (code: number): void => {
    if (ended) return;
    ended = true;
    calls.inc({ method: name, code: CODE_NAMES.get(code) ?? String(code) });
    if (streaming) openStreams.dec({ method: name });
    else duration.observe({ method: name }, (performance.now() - started) / 1000);
  };
  return new ServerInterceptingCall(call, {
    start: (next) => next({ onCancel: () => end(status.CANCELLED) }),
    sendStatus: (s, next) => {
      end(s.code);
      next(s);
    },
  });
};

/** Settlement kinds by Settlement_Kind value (1-4); index 0 counts refused settlements. */
const SETTLEMENT_KINDS = ["refused", "ack", "nack", "in_progress", "terminate"] as const;
const settlementChildren = SETTLEMENT_KINDS.map((kind) => settlements.labels({ kind }));

/** A Consume stream's figures, gathered per frame (not per message) and added here. */
export const consumeMetrics = {
  delivered(stream: string, n: number, redelivered: number): void {
    deliveries.inc({ stream }, n);
    if (redelivered > 0) redeliveries.inc({ stream }, redelivered);
  },
  /** `counts[k]`: settlements of kind k (Settlement_Kind 1-4), `counts[0]` refused ones; zeroed after. */
  settled(counts: number[]): void {
    for (let k = 0; k < counts.length; k++) {
      const n = counts[k] ?? 0;
      if (n > 0) settlementChildren[k]?.inc(n);
      counts[k] = 0;
    }
  },
};
