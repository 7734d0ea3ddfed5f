import { continueTrace, endWhenSettled, SPAN, SpanKind, tracingEnabled } from "../core/index.js";
import { PublishServiceService, type PublishServiceServer } from "../../proto/gen/fabric/v1/publish.js";
import { assertMayPublish, type GatewayContext } from "./context.js";
import { unary } from "./handlers.js";
import { assertDataSubject, assertFits, assertIdempotencyKey, headersOf } from "./input.js";
import { traceFromCall } from "./tracing.js";

/**
 * PublishService: a JetStream publish into one of the fabric's data streams, under the caller's permissions;
 * the reply means stored. Everything is checked before it reaches NATS (subject shape and length, headers,
 * idempotency key, size): bad input is INVALID_ARGUMENT and costs no one else anything. A `traceparent` in the
 * call's metadata (or headers) is stored in the message's headers (tracing on: this call's span's).
 */
export function publishService(ctx: GatewayContext): PublishServiceServer {
  return {
    publish: unary(ctx, PublishServiceService.publish.path, async (req, caller, call) => {
      assertDataSubject(req.subject);
      assertIdempotencyKey(req.idempotencyKey);
      const { headers, bytes } = headersOf(req.headers);
      const traceBytes = traceFromCall(call.metadata, headers);
      assertFits(ctx.nc, req.data.length, bytes + traceBytes + (req.idempotencyKey === "" ? 0 : Buffer.byteLength(req.idempotencyKey) + 15));
      assertMayPublish(caller, req.subject);
      const span = tracingEnabled() ? continueTrace(headers, SPAN.grpcPublish, req.subject, SpanKind.SERVER, { "rpc.system": "grpc", "fabric.caller": caller.name }) : undefined;
      const ack = await endWhenSettled(span, ctx.publisher.publish(req.subject, req.data, { headers, ...(req.idempotencyKey === "" ? {} : { msgId: req.idempotencyKey }) }));
      return { stream: ack.stream, sequence: ack.seq, duplicate: ack.duplicate };
    }),
  };
}
