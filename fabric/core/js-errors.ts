import { JetStreamApiCodes, JetStreamApiError } from "@nats-io/jetstream";

/** A JetStream API refusal with this error code. */
export function isApiError(err: unknown, code: number): boolean {
  return err instanceof JetStreamApiError && err.code === code;
}

/** A KV create or update refused because the key exists or moved on since (compare-and-set lost). */
export function isRevisionConflict(err: unknown): boolean {
  return isApiError(err, JetStreamApiCodes.StreamWrongLastSequence) || isApiError(err, JetStreamApiCodes.StreamWrongLastSequenceUnknown);
}
