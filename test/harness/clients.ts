import type { NatsConnection } from "@nats-io/transport-node";
import { connectWithCreds } from "../../identity/index.js";

/** Connects as the holder of `creds`, failing fast (no reconnect) so a kick shows as a close. */
export async function connectAs(servers: string | string[], creds: string, options: { inboxPrefix?: string; name?: string; reconnect?: boolean } = {}): Promise<NatsConnection> {
  return connectWithCreds(creds, {
    servers,
    name: options.name ?? "test client",
    ...(options.inboxPrefix === undefined ? {} : { inboxPrefix: options.inboxPrefix }),
    reconnect: options.reconnect ?? false,
  });
}

/** Resolves with the close error (or undefined) once the connection closes; rejects after the timeout. */
export async function waitClosed(nc: NatsConnection, timeoutMs = 10_000): Promise<Error | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`connection still open after ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    const r = await Promise.race([nc.closed(), timeout]);
    return r instanceof Error ? r : undefined;
  } finally {
    clearTimeout(timer);
  }
}

/** Asserts that connecting with `creds` is refused by the server; returns the error. */
export async function expectDisconnect(servers: string | string[], creds: string): Promise<Error> {
  try {
    const nc = await connectAs(servers, creds);
    await nc.close();
  } catch (err) {
    return err as Error;
  }
  throw new Error("connection was accepted but should have been refused");
}
