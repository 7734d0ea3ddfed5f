import { connect, credsAuthenticator, type NatsConnection, type ConnectionOptions } from "@nats-io/transport-node";

export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000; // 5 s

export interface FabricConnectOptions {
  servers: string | string[];
  /** The content of a `.creds` file. */
  creds?: string;
  name?: string;
  inboxPrefix?: string;
  timeoutMs?: number;
  /** Keep reconnecting forever (services) or fail fast (CLIs); default false. */
  reconnect?: boolean;
  /** Extra nats.js options. */
  extra?: Partial<ConnectionOptions>;
}

/** Connects with nats.js (transport-node) using a fabric credential. */
export async function connectNats(options: FabricConnectOptions): Promise<NatsConnection> {
  const opts: ConnectionOptions = {
    servers: options.servers,
    timeout: options.timeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
    reconnect: options.reconnect ?? false,
    ...(options.reconnect === true ? { maxReconnectAttempts: -1, reconnectTimeWait: 250 } : {}),
    ...(options.name === undefined ? {} : { name: options.name }),
    ...(options.inboxPrefix === undefined ? {} : { inboxPrefix: options.inboxPrefix }),
    ...(options.creds === undefined ? {} : { authenticator: credsAuthenticator(new TextEncoder().encode(options.creds)) }),
    ...options.extra,
  };
  return connect(opts);
}
