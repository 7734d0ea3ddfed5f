import { credentials, type Client, type Metadata } from "@grpc/grpc-js";
import { callMetadata } from "../../fabric/grpc/auth.js";

/** A grpc-js client of a generated fabric.v1 service against a local gateway (closed by the harness caller). */
export function grpcClient<C extends Client>(Ctor: new (address: string, creds: ReturnType<typeof credentials.createInsecure>) => C, port: number): C {
  return new Ctor(`127.0.0.1:${port}`, credentials.createInsecure());
}

/** The auth metadata of one call: the caller's JWT and its NKey's signature over `path`, a timestamp and a nonce. */
export function authFor(creds: string, path: string, now?: number): Metadata {
  return callMetadata(creds, path, now);
}
