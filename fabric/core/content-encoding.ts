import { gunzipSync } from "node:zlib";
import type { MsgHdrs } from "@nats-io/transport-node";
import { InvalidInputError } from "./errors.js";

/**
 * Payload compression as an opt-in codec: a message whose `Content-Encoding` header (NATS) or `content-encoding`
 * user property (MQTT 5) says `gzip` carries a gzip payload. The MQTT ingress inflates it at entry (the stream
 * stores the reading itself); a NATS publisher's compressed payload is stored as it came, with the header, and
 * the fabric's own readers (window workers, sinks, `fabric bench`) inflate it; gRPC and MQTT deliveries carry
 * the header on, for the client to inflate.
 */
export const CONTENT_ENCODING_HEADER = "Content-Encoding";
/** An inflated payload is at most this large (a bound on what a small compressed message may cost). */
export const MAX_INFLATED_BYTES = 8 * 1_048_576;

/** The payload itself: inflated when `encoding` says gzip; InvalidInputError for another encoding or bad gzip. */
export function decodePayload(data: Uint8Array, encoding: string | undefined, maxBytes = MAX_INFLATED_BYTES): Uint8Array {
  if (encoding === undefined || encoding === "" || encoding === "identity") return data;
  if (encoding.toLowerCase() !== "gzip") throw new InvalidInputError(`content encoding ${JSON.stringify(encoding)} is not supported (gzip is)`);
  try {
    return gunzipSync(data, { maxOutputLength: maxBytes });
  } catch (err) {
    throw new InvalidInputError(`payload is not gzip, or inflates to more than ${maxBytes} bytes: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** A stored message's payload itself (inflated when its header says so; as it is when it cannot be). */
export function messagePayload(m: { data: Uint8Array; headers?: MsgHdrs | undefined }): Uint8Array {
  const encoding = m.headers?.get(CONTENT_ENCODING_HEADER);
  if (encoding === undefined || encoding === "") return m.data;
  try {
    return decodePayload(m.data, encoding);
  } catch {
    return m.data;
  }
}
