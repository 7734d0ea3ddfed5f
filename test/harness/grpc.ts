import { credentials, type ChannelCredentials, type Client, type Metadata } from "@grpc/grpc-js";
import type { NatsConnection } from "@nats-io/transport-node";
import { callMetadata } from "../../fabric/grpc/auth.js";
import { issueUser } from "../../identity/index.js";
import { connectAs } from "./clients.js";
import { startTestHub, type TestHub } from "./hub.js";
import type { Harness } from "./servers.js";

/** A grpc-js client of a generated fabric.v1 service against a local gateway (closed by the harness caller). */
export function grpcClient<C extends Client>(Ctor: new (address: string, creds: ReturnType<typeof credentials.createInsecure>) => C, port: number): C {
  return new Ctor(`127.0.0.1:${port}`, credentials.createInsecure());
}

/** The auth metadata of one call: the caller's JWT and its NKey's signature over `path`, a timestamp and a nonce. */
export function authFor(creds: string, path: string, now?: number): Metadata {
  return callMetadata(creds, path, now);
}

export interface GrpcTestbed {
  hub: TestHub;
  /** A service credential (creds text) and a NATS connection made with it. */
  service: string;
  nc: NatsConnection;
  /** A client of the hub's gateway, closed on dispose. */
  client: <C extends Client>(Ctor: new (address: string, creds: ChannelCredentials) => C) => C;
}

/** A hub with its gRPC gateway, a service credential and its NATS connection: what the gateway's tests share. */
export async function grpcTestbed(h: Harness, serviceName: string, options: { windows?: boolean } = {}): Promise<GrpcTestbed> {
  const hub = await startTestHub(h, { grpc: true, ...options });
  const service = issueUser(hub.keystore, { account: "fleet", role: "service", name: serviceName }).creds ?? "";
  const nc = await connectAs(hub.urls, service);
  h.defer(() => nc.close());
  return {
    hub,
    service,
    nc,
    client: (Ctor) => {
      const c = grpcClient(Ctor, hub.grpc ?? 0);
      h.defer(() => c.close());
      return c;
    },
  };
}
