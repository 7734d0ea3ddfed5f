import { existsSync, readFileSync } from "node:fs";
import { resolve } from "node:path";
import type { Command } from "commander";
import type { NatsConnection } from "@nats-io/transport-node";
import { defaultHubDataDir, defaultKeystoreDir, InvalidInputError } from "../core/index.js";
import { connectWithCreds, Keystore } from "../../identity/index.js";
import { hubCredsPath } from "../hub/index.js";

export interface ConnFlags {
  store?: string;
  data?: string;
  server?: string[];
  creds?: string;
}

/** A connection into the tenant account: the hub's own credential (same machine) or --creds. */
export async function tenantConnection(flags: ConnFlags): Promise<NatsConnection> {
  const ks = Keystore.open(resolve(flags.store ?? defaultKeystoreDir()));
  const servers = flags.server ?? ks.storeFile().hubUrls;
  let creds: string;
  if (flags.creds !== undefined) creds = readFileSync(resolve(flags.creds), "utf8");
  else {
    const tenant = ks.tenantAccounts()[0];
    const path = tenant === undefined ? "" : hubCredsPath(resolve(flags.data ?? defaultHubDataDir()), tenant.name);
    if (!existsSync(path)) throw new InvalidInputError(`no hub credential at ${path}: run this on the hub's machine (--data) or give --creds`);
    creds = readFileSync(path, "utf8");
  }
  return connectWithCreds(creds, { servers, name: "fabric cli" });
}

/** Runs `fn` on a tenant connection (tenantConnection), closed after. */
export async function withTenant<T>(flags: ConnFlags, fn: (nc: NatsConnection) => Promise<T>): Promise<T> {
  const nc = await tenantConnection(flags);
  try {
    return await fn(nc);
  } finally {
    await nc.close();
  }
}

export function withConnection(cmd: Command): Command {
  return cmd
    .option("--store <dir>", "keystore directory (default: $FABRIC_HOME/keys)")
    .option("--data <dir>", "the hub's data directory, for its credential (default: $FABRIC_HOME/hub)")
    .option("--server <url...>", "hub URL(s) (default: what fabric up recorded)")
    .option("--creds <file>", "a service credential of the tenant account instead");
}

