import type { Metadata, ServiceError } from "@grpc/grpc-js";
import type { JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { mayPublish, maySubscribe } from "../../ingress/permissions.js";
import type { JetStreamPublisher, Logger } from "../core/index.js";
import type { Caller, CallerAuth } from "./auth.js";
import { GatewayError } from "./errors.js";

/** What every service of the gateway gets. */
export interface GatewayContext {
  /** The gateway's own connection into the tenant account (callers' permissions are enforced here, not by NATS). */
  nc: NatsConnection;
  /** The JetStream manager of that connection, made once (again after a failure) and shared by every service. */
  jsm: () => Promise<JetStreamManager>;
  publisher: JetStreamPublisher;
  auth: CallerAuth;
  logger: Logger;
  /** True once shutdown began: new streams are refused with UNAVAILABLE. */
  draining(): boolean;
  /**
   * Registers an open server stream, so shutdown can end it with UNAVAILABLE (and revocation with
   * UNAUTHENTICATED, through auth.track). Returns the unregister.
   */
  openStream(end: (err: Partial<ServiceError>) => void): () => void;
  /** A unary call began: the drain waits for it to end (the returned function). */
  beginCall(): () => void;
}

/** UNAVAILABLE once the gateway drains: clients retry elsewhere. */
export function assertServing(ctx: GatewayContext): void {
  if (ctx.draining()) throw new GatewayError("FABRIC_ERR_UNAVAILABLE", "the gateway is shutting down");
}

/** Authenticates a call (method: the full path, e.g. /fabric.v1.PublishService/Publish). */
export function callerOf(ctx: GatewayContext, md: Metadata, method: string): Caller {
  assertServing(ctx);
  return ctx.auth.authenticate(md, method);
}

/** A writer may read back what it writes, a subscriber what it may watch. */
export function mayRead(caller: Caller, subject: string): boolean {
  return mayPublish(caller.permissions, subject) || maySubscribe(caller.permissions, subject);
}

export function assertMayRead(caller: Caller, subject: string): void {
  if (!mayRead(caller, subject)) throw new GatewayError("FABRIC_ERR_PERMISSION_DENIED", `the credential of ${caller.name} may not read ${subject}`);
}

export function assertMaySubscribe(caller: Caller, subject: string): void {
  if (!maySubscribe(caller.permissions, subject)) throw new GatewayError("FABRIC_ERR_PERMISSION_DENIED", `the credential of ${caller.name} may not read ${subject}`);
}

export function assertMayPublish(caller: Caller, subject: string): void {
  if (!mayPublish(caller.permissions, subject)) throw new GatewayError("FABRIC_ERR_PERMISSION_DENIED", `the credential of ${caller.name} may not publish to ${subject}`);
}
