/** What a JetStream delivery's reply (ack) subject says about it. */
export interface AckSubject {
  stream: string;
  consumer: string;
  /** The delivery count: 1 for the first delivery, 2 for the first redelivery… */
  attempt: number;
  streamSeq: number;
  /** The consumer's delivery sequence: consecutive for consecutive deliveries. */
  deliverySeq: number;
  storedAtMs: number;
  /** Messages of the consumer not yet delivered after this one. */
  pending: number;
}

const dots = new Int32Array(16);
const dot = (i: number): number => dots[i] ?? 0;
const token = (s: string, i: number, n: number): string => s.slice(i === 0 ? 0 : dot(i - 1) + 1, i < n ? dot(i) : s.length);
/** A decimal of 1-16 digits, or NaN (a character loop: this runs several times per delivery). */
function whole(s: string): number {
  if (s.length === 0 || s.length > 16) return NaN;
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i) - 48;
    if (c < 0 || c > 9) return NaN;
    n = n * 10 + c;
  }
  return n;
}

/**
 * Reads `$JS.ACK[.<domain>.<account hash>].<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts ns>.<pending>[.<token>]`
 * by its dot positions (no split, no per-field object beyond the result: it runs for every delivery).
 * Undefined for anything else.
 */
export function parseAckSubject(reply: string): AckSubject | undefined {
  if (!reply.startsWith("$JS.ACK.")) return undefined;
  let n = 0;
  for (let i = 0; i < reply.length && n < 16; i++) if (reply.charCodeAt(i) === 46) dots[n++] = i;
  const tokens = n + 1;
  const o = tokens === 9 ? 2 : tokens === 11 || tokens === 12 ? 4 : -1; // index of <stream>
  if (o < 0) return undefined;
  const ns = token(reply, o + 5, n);
  const a: AckSubject = {
    stream: token(reply, o, n),
    consumer: token(reply, o + 1, n),
    attempt: whole(token(reply, o + 2, n)),
    streamSeq: whole(token(reply, o + 3, n)),
    deliverySeq: whole(token(reply, o + 4, n)),
    storedAtMs: ns.length >= 7 ? whole(ns.slice(0, -6)) || 0 : 0,
    pending: whole(token(reply, o + 6, n)),
  };
  if (a.stream === "" || a.consumer === "" || !Number.isSafeInteger(a.attempt + a.streamSeq + a.deliverySeq + a.pending)) return undefined;
  return a;
}
