import { Command, CommanderError, Option } from "commander";
import { existsSync } from "node:fs";
import { errorMessage, isFabricError } from "./errors.js";
import { writeSecretFile } from "./files.js";
import { InvalidInputError } from "./errors.js";

/** Exit codes of the fabric's CLIs. */
export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

const USAGE_CODES: ReadonlySet<string> = new Set(["FABRIC_ERR_INVALID_INPUT", "FABRIC_ERR_CONFIG", "FABRIC_ERR_UNKNOWN_ROLE", "FABRIC_ERR_UNKNOWN_ACCOUNT"]);

/** The one mapping from an error to a CLI exit code. */
export function exitCodeFor(err: unknown): number {
  if (err instanceof CommanderError) return err.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
  if (isFabricError(err) && USAGE_CODES.has(err.code)) return EXIT_USAGE;
  return EXIT_FAILURE;
}

/** Data goes to stdout. */
export function out(text: string): void {
  process.stdout.write(text.endsWith("\n") ? text : `${text}\n`);
}

/** Messages and progress go to stderr. */
export function say(text: string): void {
  process.stderr.write(text.endsWith("\n") ? text : `${text}\n`);
}

export function outJson(value: unknown): void {
  out(JSON.stringify(value, null, 2));
}

/**
 * Writes a secret (creds) where `-o` says: "-" is stdout, anything else a new 0600 file (an existing file is
 * never overwritten, so an old credential is not lost by a typo).
 */
export function writeSecretOutput(target: string, content: string): void {
  if (target === "-") {
    process.stdout.write(content);
    return;
  }
  if (existsSync(target)) throw new InvalidInputError(`${target} already exists: choose another -o (existing credentials are never overwritten)`);
  writeSecretFile(target, content);
}

/** Commander program with usage errors mapped to exit code 2 and written to stderr. */
export function newProgram(name: string, description: string): Command {
  const program = new Command(name).description(description).showHelpAfterError(false);
  program.exitOverride();
  program.configureOutput({ writeErr: (s) => process.stderr.write(s), writeOut: (s) => process.stdout.write(s) });
  return program;
}

/** A port flag (0 lets the system pick); without a default it is optional. */
export function portOption(flags: string, description: string, defaultValue?: number): Option {
  const option = new Option(flags, description).argParser((v) => parsePort(v, flags.split(" ")[0] ?? flags));
  return defaultValue === undefined ? option : option.default(defaultValue);
}

/** A port flag's value: 0-65535 (0 lets the system pick); the error names the flag. */
function parsePort(value: string, flag: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65_535) throw new InvalidInputError(`${flag} ${JSON.stringify(value)} is not a port (0-65535; 0 lets the system pick)`);
  return n;
}

/** Runs a CLI: errors become one line on stderr (with the stable code) and the mapped exit code. */
export async function runCli(program: Command, argv: string[] = process.argv): Promise<void> {
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = exitCodeFor(err);
      return;
    }
    const code = isFabricError(err) ? ` [${err.code}]` : "";
    process.stderr.write(`${program.name()}: error${code}: ${errorMessage(err)}\n`);
    process.exitCode = exitCodeFor(err);
  }
}

/** Runs until SIGINT or SIGTERM, then stops what runs. */
export async function untilSignal(stop: () => Promise<void>): Promise<void> {
  await new Promise<void>((done) => {
    let stopping = false;
    const onSignal = (sig: NodeJS.Signals): void => {
      if (stopping) return;
      stopping = true;
      say(`${sig}: stopping`);
      stop().then(done, (err: unknown) => {
        say(`error while stopping: ${String(err)}`);
        done();
      });
    };
    process.once("SIGINT", onSignal);
    process.once("SIGTERM", onSignal);
  });
}
