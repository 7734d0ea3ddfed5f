import { describe, expect, it } from "vitest";
import { parseDelivery } from "../../streams/source-reader.js";

describe("parseDelivery", () => {
  it("reads the sequences, pending count and time of every reply subject form JetStream uses", () => {
    const ns = "1700000000123456789";
    expect(parseDelivery(`$JS.ACK.TELEMETRY.c1.1.42.7.${ns}.99`)).toEqual({ seq: 42, dseq: 7, pending: 99, ms: 1_700_000_000_123 });
    expect(parseDelivery(`$JS.ACK.hub.ACCHASH.TELEMETRY.c1.2.43.8.${ns}.0`)).toEqual({ seq: 43, dseq: 8, pending: 0, ms: 1_700_000_000_123 });
    expect(parseDelivery(`$JS.ACK._.ACCHASH.TELEMETRY.c1.1.44.9.${ns}.5.RANDOM`)).toEqual({ seq: 44, dseq: 9, pending: 5, ms: 1_700_000_000_123 });
  });

  it("is undefined for a subject that is not a JetStream delivery", () => {
    expect(parseDelivery("_INBOX.abc.def")).toBeUndefined();
    expect(parseDelivery("$JS.ACK.too.short")).toBeUndefined();
  });
});
