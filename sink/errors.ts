import { FabricError, type FabricErrorOptions } from "../fabric/core/index.js";

/** Stable codes of the sink's errors. */
export type SinkErrorCode =
  | "FABRIC_ERR_SINK_SCHEMA"
  | "FABRIC_ERR_SINK_CONSUMER"
  | "FABRIC_ERR_SINK_STOPPED"
  | "FABRIC_ERR_SINK_CREDENTIAL"
  | "FABRIC_ERR_SINK_STANDBY"
  | "FABRIC_ERR_SINK_CLAIM_LOST";

/**
 * A sink failure: the database (unreachable, refused a statement), its schema, the JetStream consumer, the
 * database password a definition names (missing file or variable); STANDBY: another process holds the sink's
 * claim on a table; CLAIM_LOST: the connection holding it is gone.
 */
export class SinkError extends FabricError {
  constructor(code: SinkErrorCode, message: string, options: FabricErrorOptions = {}) {
    super(code, message, options);
  }
}

/** SQLSTATE classes of errors a row causes (22 data exception, 23 integrity constraint): the row is refused, not the batch. */
const ROW_ERROR_CLASSES: ReadonlySet<string> = new Set(["22", "23"]);

/** The SQLSTATE of a PostgreSQL error (`pg`'s DatabaseError), if it is one. */
export function sqlState(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/** True when a row's content made the statement fail (bad type, constraint): retrying row by row finds it. */
export function isRowError(err: unknown): boolean {
  const state = sqlState(err);
  return state !== undefined && ROW_ERROR_CLASSES.has(state.slice(0, 2));
}
