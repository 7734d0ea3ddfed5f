/**
 * The fabric's error base. Every error the fabric raises on purpose is a FabricError with a stable
 * `code` (never reworded once released), an optional `cause` and structured `fields` for logs and
 * machine-readable CLI output. Boundaries (CLI exit codes, gRPC status, MQTT reason codes) map codes
 * once, in their own table.
 */
export type FabricErrorFields = Readonly<Record<string, string | number | boolean | undefined>>;

export interface FabricErrorOptions {
  cause?: unknown;
  fields?: FabricErrorFields;
}

export class FabricError extends Error {
  readonly code: string;
  readonly fields: FabricErrorFields;

  constructor(code: string, message: string, options: FabricErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.fields = options.fields ?? {};
  }

  toJSON(): { code: string; message: string; fields: FabricErrorFields } {
    return { code: this.code, message: this.message, fields: this.fields };
  }
}

/** Bad input from a user: a flag, a config file, a name. The message names what was wrong. */
export class InvalidInputError extends FabricError {
  constructor(message: string, options: FabricErrorOptions = {}) {
    super("FABRIC_ERR_INVALID_INPUT", message, options);
  }
}

/** Bad configuration (a file or a generated config that nats-server refused). */
export class ConfigError extends FabricError {
  constructor(message: string, options: FabricErrorOptions = {}) {
    super("FABRIC_ERR_CONFIG", message, options);
  }
}

/** nats-server is missing, too old or failed to start (or one left over from an earlier run would not stop). */
export class NatsServerError extends FabricError {
  constructor(code: "FABRIC_ERR_NATS_SERVER_MISSING" | "FABRIC_ERR_NATS_SERVER_TOO_OLD" | "FABRIC_ERR_NATS_SERVER_START" | "FABRIC_ERR_NATS_SERVER_LEFTOVER", message: string, options: FabricErrorOptions = {}) {
    super(code, message, options);
  }
}

/** A timed wait that ran out. */
export class TimeoutError extends FabricError {
  constructor(message: string, options: FabricErrorOptions = {}) {
    super("FABRIC_ERR_TIMEOUT", message, options);
  }
}

export function isFabricError(err: unknown): err is FabricError {
  return err instanceof FabricError;
}

/** A short, loggable description of anything thrown. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
