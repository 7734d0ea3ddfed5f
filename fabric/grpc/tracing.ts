import type { Metadata } from "@grpc/grpc-js";
import type { MsgHdrs } from "@nats-io/transport-node";
import { carryTraceContext, TRACEPARENT, TRACESTATE } from "../core/index.js";

function metadataText(md: Metadata, key: string): string | undefined {
  const v = md.get(key)[0];
  return typeof v === "string" ? v : undefined;
}

/**
 * A call's W3C trace context onto the headers of the message it stores: the metadata `traceparent` (with
 * `tracestate`) wins over one in the request's headers; a malformed traceparent is dropped either way. Returns
 * what the trace context costs in the message's headers, in bytes (for the max_payload check).
 */
export function traceFromCall(md: Metadata, headers: MsgHdrs): number {
  const tp = metadataText(md, TRACEPARENT);
  if (tp !== undefined) carryTraceContext(headers, tp, metadataText(md, TRACESTATE));
  else if (headers.has(TRACEPARENT) || headers.has(TRACESTATE)) carryTraceContext(headers, headers.get(TRACEPARENT), headers.get(TRACESTATE));
  else return 0;
  let bytes = 0;
  for (const k of [TRACEPARENT, TRACESTATE]) if (headers.has(k)) bytes += k.length + headers.get(k).length + 4;
  return bytes;
}
