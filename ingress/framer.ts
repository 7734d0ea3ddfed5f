/**
 * Splits a byte stream into MQTT packets by their fixed header (type byte + "remaining length" varint of at
 * most four bytes) before they are parsed, so a packet over the size limit is refused from its header alone
 * (never buffered), and a malformed length is caught at once.
 */
export type FrameResult = { kind: "packet"; bytes: Buffer } | { kind: "too-large"; size: number } | { kind: "malformed"; why: string };

export class Framer {
  private buffer: Buffer = Buffer.alloc(0);

  constructor(private readonly maxPacketSize: number) {}

  /** Feeds bytes; returns the complete packets (and at most one error, last). */
  push(chunk: Buffer): FrameResult[] {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    const out: FrameResult[] = [];
    for (;;) {
      if (this.buffer.length < 2) return out;
      let remaining = 0;
      let multiplier = 1;
      let i = 1;
      let complete = false;
      for (; i <= 4 && i < this.buffer.length; i++) {
        const b = this.buffer[i] ?? 0;
        remaining += (b & 0x7f) * multiplier;
        multiplier *= 128;
        if ((b & 0x80) === 0) {
          complete = true;
          break;
        }
      }
      if (!complete) {
        if (i > 4) {
          out.push({ kind: "malformed", why: "remaining length takes more than four bytes" });
          return out;
        }
        return out; // need more bytes of the header
      }
      const total = i + 1 + remaining;
      if (total > this.maxPacketSize) {
        out.push({ kind: "too-large", size: total });
        return out;
      }
      if (this.buffer.length < total) return out;
      out.push({ kind: "packet", bytes: this.buffer.subarray(0, total) });
      this.buffer = this.buffer.subarray(total);
    }
  }
}
