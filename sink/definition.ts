import { readFileSync } from "node:fs";
import { isAbsolute } from "node:path";
import { z } from "zod";
import { TOKEN_PATTERN } from "../fabric/core/index.js";
import { SinkError } from "./errors.js";
import { postgresSinkConfigSchema, type PostgresSinkConfig } from "./options.js";

function hasPassword(text: string): boolean {
  try {
    const u = new URL(text);
    return u.password !== "" || u.searchParams.has("password");
  } catch {
    return false;
  }
}

/**
 * A sink kept in KV `sink_defs` (`fabric sinks add FILE`) and run by the hub's processes. KV is readable by
 * every service of the account, so a definition never holds the database password: the URL carries none (it is
 * refused), and `passwordFile` (a 0600 file on the hosts running the hub) or `passwordEnv` (a variable of their
 * environment) names where the process running the sink reads it. Neither: the process's own PGPASSWORD or
 * ~/.pgpass, or a server that needs no password.
 */
export const sinkDefinitionSchema = postgresSinkConfigSchema
  .omit({ name: true, url: true })
  .extend({
    name: z.string().regex(TOKEN_PATTERN, "must be a token: lowercase letters, digits, _ and -"),
    kind: z.literal("postgres", { error: 'must be "postgres"' }),
    url: postgresSinkConfigSchema.shape.url.refine((u) => !hasPassword(u), "must not contain a password (KV is readable by every service of the account): name it with passwordFile or passwordEnv"),
    passwordFile: z.string().refine(isAbsolute, "must be an absolute path (read by the process running the sink)").optional(),
    passwordEnv: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "must be an environment variable's name").optional(),
    /** Stored by versions whose sink fetched in batches (before positions were kept in the database): accepted, unused. */
    fetchExpiresMs: z.number().optional(),
  })
  .refine((d) => d.passwordFile === undefined || d.passwordEnv === undefined, { path: ["passwordEnv"], message: "give passwordFile or passwordEnv, not both" });
export type SinkDefinition = Readonly<z.infer<typeof sinkDefinitionSchema>>;
export type SinkDefinitionInput = z.input<typeof sinkDefinitionSchema>;

/**
 * The sink's config out of its definition, with the password read where the definition says (in the process
 * running the sink, at each start). Throws FABRIC_ERR_SINK_CREDENTIAL naming the file or variable, never the password.
 */
export function sinkConfigOf(def: SinkDefinition, env: NodeJS.ProcessEnv = process.env): PostgresSinkConfig {
  const { kind: _kind, passwordFile, passwordEnv, fetchExpiresMs: _unused, ...rest } = def;
  let password: string | undefined;
  if (passwordFile !== undefined) {
    try {
      password = readFileSync(passwordFile, "utf8").replace(/\r?\n$/, "");
    } catch (err) {
      throw new SinkError("FABRIC_ERR_SINK_CREDENTIAL", `sink ${def.name}: cannot read its passwordFile ${passwordFile}: ${(err as NodeJS.ErrnoException).code ?? "error"}`, { cause: err });
    }
  } else if (passwordEnv !== undefined) {
    password = env[passwordEnv];
    if (password === undefined) throw new SinkError("FABRIC_ERR_SINK_CREDENTIAL", `sink ${def.name}: its passwordEnv ${passwordEnv} is not set in this process's environment`);
  }
  const url = new URL(def.url);
  if (password !== undefined && password !== "") url.password = encodeURIComponent(password);
  return Object.freeze({ ...rest, url: url.toString() });
}
