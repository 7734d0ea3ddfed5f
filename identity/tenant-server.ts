import type { NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "../fabric/core/index.js";
import { connectWithCreds } from "./connect.js";
import { watchAccounts, type AccountWatcher } from "./watch.js";

/** What a server of the fabric's own (the MQTT ingress, the gRPC gateway) needs to serve one tenant account. */
export interface TenantServerOptions {
  servers: string[];
  /** Its own credential in the tenant account. */
  creds: string;
  /** A credential of role `watcher` in the system account: sees account updates (revocations) as pushed. */
  watcherCreds: string;
  /** The operator keys account JWTs must be signed with. */
  operatorKeys: string[];
  /** The tenant account's public key. */
  accountKey: string;
}

export interface TenantServerConnection {
  nc: NatsConnection;
  /** The account JWTs its callers' credentials are checked against, kept current. */
  watcher: AccountWatcher;
  close(): Promise<void>;
}

/**
 * Connects a server of the fabric's own: into the tenant account with its credential, and into the system
 * account to watch account updates; fails unless the hub has the tenant's account JWT.
 */
export async function connectTenantServer(options: TenantServerOptions & { name: string; logger: Logger }): Promise<TenantServerConnection> {
  const nc = await connectWithCreds(options.creds, { servers: options.servers, name: options.name, reconnect: true });
  const closers: (() => Promise<void>)[] = [() => nc.drain()];
  const close = async (): Promise<void> => {
    for (const c of closers.splice(0).reverse()) await c().catch(() => undefined);
  };
  try {
    const sysNc = await connectWithCreds(options.watcherCreds, { servers: options.servers, name: `${options.name} watcher`, reconnect: true });
    closers.push(() => sysNc.drain());
    const watcher = watchAccounts({ connection: sysNc, operatorKeys: options.operatorKeys, logger: options.logger });
    closers.push(() => watcher.stop());
    if (!(await watcher.ensure(options.accountKey))) throw new Error(`the hub has no account JWT for ${options.accountKey}`);
    return { nc, watcher, close };
  } catch (err) {
    await close();
    throw err;
  }
}
