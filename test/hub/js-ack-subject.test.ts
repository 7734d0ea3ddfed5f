import { describe, expect, it } from "vitest";
import { parseAckSubject } from "../../fabric/core/index.js";

describe("parseAckSubject", () => {
  it("reads every field of each reply subject form JetStream uses", () => {
    const ns = "1700000000123456789";
    expect(parseAckSubject(`$JS.ACK.TELEMETRY.c1.1.42.7.${ns}.99`)).toEqual({ stream: "TELEMETRY", consumer: "c1", attempt: 1, streamSeq: 42, deliverySeq: 7, storedAtMs: 1_700_000_000_123, pending: 99 });
    expect(parseAckSubject(`$JS.ACK.hub.ACCHASH.TELEMETRY.c1.2.43.8.${ns}.0`)).toEqual({ stream: "TELEMETRY", consumer: "c1", attempt: 2, streamSeq: 43, deliverySeq: 8, storedAtMs: 1_700_000_000_123, pending: 0 });
    expect(parseAckSubject(`$JS.ACK._.ACCHASH.TELEMETRY.c1.1.44.9.${ns}.5.RANDOM`)).toMatchObject({ streamSeq: 44, deliverySeq: 9, pending: 5 });
  });

  it("is undefined for a subject that is not a JetStream delivery, or a malformed one", () => {
    expect(parseAckSubject("_INBOX.abc.def")).toBeUndefined();
    expect(parseAckSubject("$JS.ACK.too.short")).toBeUndefined();
    expect(parseAckSubject("$JS.ACK.S.c.x.42.7.1700000000123456789.9")).toBeUndefined();
  });
});
