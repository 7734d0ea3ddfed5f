import { connect, type Authenticator, type NatsConnection, type ConnectionOptions } from "@nats-io/transport-node";

export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000; // 5 s

export interface FabricConnectOptions {
  servers: string | string[];
  /** How to answer the server's nonce (identity's `credsAuthenticator` for a fabric credential). */
  authenticator?: Authenticator;
  name?: string;
  inboxPrefix?: string;
  timeoutMs?: number;
  /** Keep reconnecting forever (services) or fail fast (CLIs); default false. */
  reconnect?: boolean;
  /** Extra nats.js options. */
  extra?: Partial<ConnectionOptions>;
}

/** Connects with nats.js (transport-node). */
export async function connectNats(options: FabricConnectOptions): Promise<NatsConnection> {
  const opts: ConnectionOptions = {
    servers: options.servers,
    timeout: options.timeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
    reconnect: options.reconnect ?? false,
    // no Error (and stack) captured per request: costs ~8 % of a busy worker's CPU, helps no operator
    noAsyncTraces: true,
    ...(options.reconnect === true ? { maxReconnectAttempts: -1, reconnectTimeWait: 250 } : {}),
    ...(options.name === undefined ? {} : { name: options.name }),
    ...(options.inboxPrefix === undefined ? {} : { inboxPrefix: options.inboxPrefix }),
    ...(options.authenticator === undefined ? {} : { authenticator: options.authenticator }),
    ...options.extra,
  };
  return connect(opts);
}
