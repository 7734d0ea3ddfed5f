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
/** Where token i starts and ends (n dots in all). */
const from = (i: number): number => (i === 0 ? 0 : dot(i - 1) + 1);
const to = (s: string, i: number, n: number): number => (i < n ? dot(i) : s.length);

/** The decimal in s[start, end) of 1-16 digits, or NaN; read in place (no substring: this runs per delivery). */
function whole(s: string, start: number, end: number): number {
  if (end <= start || end - start > 16) return NaN;
  let v = 0;
  for (let i = start; i < end; i++) {
    const c = s.charCodeAt(i) - 48;
    if (c < 0 || c > 9) return NaN;
    v = v * 10 + c;
  }
  return v;
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
  const tsStart = from(o + 5);
  const tsEnd = to(reply, o + 5, n);
  const a: AckSubject = {
    stream: reply.slice(from(o), to(reply, o, n)),
    consumer: reply.slice(from(o + 1), to(reply, o + 1, n)),
    attempt: whole(reply, from(o + 2), to(reply, o + 2, n)),
    streamSeq: whole(reply, from(o + 3), to(reply, o + 3, n)),
    deliverySeq: whole(reply, from(o + 4), to(reply, o + 4, n)),
    // nanoseconds: the milliseconds are all but the last six digits
    storedAtMs: tsEnd - tsStart >= 7 ? whole(reply, tsStart, tsEnd - 6) || 0 : 0,
    pending: whole(reply, from(o + 6), to(reply, o + 6, n)),
  };
  if (a.stream === "" || a.consumer === "" || !Number.isSafeInteger(a.attempt + a.streamSeq + a.deliverySeq + a.pending)) return undefined;
  return a;
}
