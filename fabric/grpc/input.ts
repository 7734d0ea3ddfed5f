import { headers as natsHeaders, type MsgHdrs, type NatsConnection } from "@nats-io/transport-node";
import { dataSubjectStream } from "../../streams/index.js";
import { InvalidInputError } from "../core/index.js";

/**
 * Checks of what a caller sends into NATS through the gateway, done before anything reaches the gateway's
 * connection: a subject, header or payload nats-server would refuse would otherwise close that connection (a
 * protocol line over max_control_line, a payload over max_payload) or surface as an internal error.
 */

/** The longest idempotency key, in characters. */
export const MAX_IDEMPOTENCY_KEY_CHARS = 256;
/** At most this many headers on a published message. */
export const MAX_HEADERS = 64;
/** The header names and values together, in bytes (they travel in the message, counted against max_payload). */
export const MAX_HEADER_BYTES = 16 * 1024;
/** NATS header names: printable ASCII without ':' (RFC 7230 field names as nats-server reads them). */
const HEADER_NAME = /^[!-9;-~]{1,256}$/;
// eslint-disable-next-line no-control-regex
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f]/;
/** What the framing of a message's headers costs beyond names and values: `NATS/1.0\r\n`, `: ` and `\r\n` each, the final `\r\n`. */
const HEADER_FRAMING_BYTES = 12;

function shown(v: string): string {
  return JSON.stringify(v.length > 80 ? `${v.slice(0, 80)}…` : v);
}

/** A subject of the fabric's data streams (telemetry, events, agg, cmd) and the stream that stores it. */
export function assertDataSubject(subject: string, field = "subject"): string {
  const r = dataSubjectStream(subject);
  if ("problem" in r) throw new InvalidInputError(`${field} ${shown(subject)} ${r.problem}`, { fields: { [field]: subject.slice(0, 80) } });
  return r.stream;
}

/** An idempotency key (a Nats-Msg-Id): 1-256 characters, no control characters (CR/LF would split the header). */
export function assertIdempotencyKey(key: string, field = "idempotency_key"): void {
  if (key.length > MAX_IDEMPOTENCY_KEY_CHARS) throw new InvalidInputError(`${field} is longer than ${MAX_IDEMPOTENCY_KEY_CHARS} characters`);
  if (CONTROL.test(key)) throw new InvalidInputError(`${field} ${shown(key)} contains a control character (CR, LF, …)`);
  if (key !== key.trim()) throw new InvalidInputError(`${field} ${shown(key)} starts or ends with white space`);
}

/** Message headers from a request's map, each name and value checked; their size in bytes as sent. */
export function headersOf(map: Readonly<Record<string, string>>, field = "headers"): { headers: MsgHdrs; bytes: number } {
  const entries = Object.entries(map);
  if (entries.length > MAX_HEADERS) throw new InvalidInputError(`${field} holds more than ${MAX_HEADERS} headers`);
  const headers = natsHeaders();
  let bytes = HEADER_FRAMING_BYTES;
  for (const [k, v] of entries) {
    if (!HEADER_NAME.test(k)) throw new InvalidInputError(`${field}: name ${shown(k)} is not a NATS header name (1-256 printable ASCII characters without ':' or spaces)`);
    if (CONTROL.test(v)) throw new InvalidInputError(`${field}: the value of ${k} contains a control character (CR, LF, …)`);
    bytes += Buffer.byteLength(k) + Buffer.byteLength(v) + 4;
    headers.set(k, v);
  }
  if (bytes > MAX_HEADER_BYTES) throw new InvalidInputError(`${field} take ${bytes} bytes: at most ${MAX_HEADER_BYTES}`);
  return { headers, bytes };
}

/** Refuses a message larger than the server's max_payload (headers included), as INVALID_ARGUMENT. */
export function assertFits(nc: NatsConnection, dataBytes: number, headerBytes: number, field = "data"): void {
  const max = nc.info?.max_payload;
  if (max !== undefined && dataBytes + headerBytes > max) {
    throw new InvalidInputError(`${field} is ${dataBytes} bytes${headerBytes > 0 ? ` (${headerBytes} more in headers)` : ""}: the fabric's servers take at most ${max} bytes a message`, {
      fields: { [field]: dataBytes, max_payload: max },
    });
  }
}
