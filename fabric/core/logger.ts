import { pino, type Logger } from "pino";

export type { Logger } from "pino";

export interface LoggerOptions {
  /** pino level; default from FABRIC_LOG_LEVEL, else "info". */
  level?: string;
  /** Component name, shown as `name` on every line. */
  name?: string;
  /** Where lines go; default stderr (stdout is for data). */
  destination?: NodeJS.WritableStream;
}

/**
 * Keys whose values are secrets. pino censors them wherever they appear at the top level or one level
 * down, so a seed or a creds file never reaches a log even if a caller passes one by mistake.
 */
const SECRET_KEYS = ["seed", "creds", "token", "password", "privateKey", "nonceSecret"];
const REDACT_PATHS = [...SECRET_KEYS, ...SECRET_KEYS.map((k) => `*.${k}`)];

/** The one logger factory of the fabric: JSON lines on stderr, secrets redacted. */
export function createLogger(options: LoggerOptions = {}): Logger {
  const level = options.level ?? process.env["FABRIC_LOG_LEVEL"] ?? "info";
  const opts = {
    level,
    base: options.name === undefined ? {} : { name: options.name },
    redact: { paths: REDACT_PATHS, censor: "[redacted]" },
  };
  return pino(opts, (options.destination ?? process.stderr) as pino.DestinationStream);
}

/** A logger that drops everything; for library callers that pass none. */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}
