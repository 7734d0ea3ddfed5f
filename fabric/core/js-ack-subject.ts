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

/** The text of s[start, end), reusing `previous` when it is the same (no allocation for the common case). */
function region(s: string, start: number, end: number, previous: string): string {
  return previous.length === end - start && s.startsWith(previous, start) ? previous : s.slice(start, end);
}

/**
 * Reads `$JS.ACK[.<domain>.<account hash>].<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts ns>.<pending>[.<token>]`
 * into `out` by its dot positions: no split and, for a stream and consumer seen in `out` before, no allocation
 * (it runs for every delivery). False, `out` unspecified, for anything else.
 */
export function readAckSubject(reply: string, out: AckSubject): boolean {
  if (!reply.startsWith("$JS.ACK.")) return false;
  let n = 0;
  for (let i = 0; i < reply.length && n < 16; i++) if (reply.charCodeAt(i) === 46) dots[n++] = i;
  const tokens = n + 1;
  const o = tokens === 9 ? 2 : tokens === 11 || tokens === 12 ? 4 : -1; // index of <stream>
  if (o < 0) return false;
  const tsStart = from(o + 5);
  const tsEnd = to(reply, o + 5, n);
  out.stream = region(reply, from(o), to(reply, o, n), out.stream);
  out.consumer = region(reply, from(o + 1), to(reply, o + 1, n), out.consumer);
  out.attempt = whole(reply, from(o + 2), to(reply, o + 2, n));
  out.streamSeq = whole(reply, from(o + 3), to(reply, o + 3, n));
  out.deliverySeq = whole(reply, from(o + 4), to(reply, o + 4, n));
  // nanoseconds: the milliseconds are all but the last six digits
  out.storedAtMs = tsEnd - tsStart >= 7 ? whole(reply, tsStart, tsEnd - 6) || 0 : 0;
  out.pending = whole(reply, from(o + 6), to(reply, o + 6, n));
  return out.stream !== "" && out.consumer !== "" && Number.isSafeInteger(out.attempt + out.streamSeq + out.deliverySeq + out.pending);
}

/** An empty AckSubject, for readAckSubject to fill (again and again). */
export function emptyAckSubject(): AckSubject {
  return { stream: "", consumer: "", attempt: 0, streamSeq: 0, deliverySeq: 0, storedAtMs: 0, pending: 0 };
}

/** readAckSubject into a new object: undefined for anything that is not a JetStream delivery's reply subject. */
export function parseAckSubject(reply: string): AckSubject | undefined {
  const a = emptyAckSubject();
  return readAckSubject(reply, a) ? a : undefined;
}
