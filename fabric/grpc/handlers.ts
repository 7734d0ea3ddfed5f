import type { handleServerStreamingCall, handleUnaryCall, ServerUnaryCall, ServerWritableStream, ServiceError } from "@grpc/grpc-js";
import type { Caller } from "./auth.js";
import { assertServing, callerOf, type GatewayContext } from "./context.js";
import { toServiceError } from "./errors.js";

/** How long a unary call may take when the client set no deadline. */
export const DEFAULT_CALL_TIMEOUT_MS = 30_000;

/** Milliseconds left before the call's deadline (or the default). */
export function timeLeft(call: { getDeadline(): Date | number }): number {
  const d = call.getDeadline();
  const at = d instanceof Date ? d.getTime() : d;
  return Number.isFinite(at) && at > 0 ? Math.max(1, at - Date.now()) : DEFAULT_CALL_TIMEOUT_MS;
}

/**
 * A unary handler without a caller credential (the request carries its own proof); errors through the one
 * table. Refused with UNAVAILABLE once the gateway drains; a call in progress holds the drain until it ends.
 */
export function publicUnary<Req, Res>(ctx: GatewayContext, fn: (req: Req, call: ServerUnaryCall<Req, Res>) => Promise<Res>): handleUnaryCall<Req, Res> {
  return (call, callback) => {
    const done = ctx.beginCall();
    Promise.resolve()
      .then(() => {
        assertServing(ctx);
        return fn(call.request, call);
      })
      .then(
        (res) => callback(null, res),
        (err: unknown) => callback(toServiceError(err)),
      )
      .finally(done);
  };
}

/** A unary handler: the caller authenticated, errors through the one table. */
export function unary<Req, Res>(ctx: GatewayContext, path: string, fn: (req: Req, caller: Caller, call: ServerUnaryCall<Req, Res>) => Promise<Res>): handleUnaryCall<Req, Res> {
  return publicUnary(ctx, (req, call) => fn(req, callerOf(ctx, call.metadata, path), call));
}

/** Writes one message, waiting while the transport is full (`drain`), or until the call is cancelled. */
export async function write<Res>(call: ServerWritableStream<unknown, Res>, msg: Res): Promise<boolean> {
  if (call.cancelled) return false;
  if (call.write(msg)) return true;
  return new Promise<boolean>((resolve) => {
    const done = (ok: boolean): void => {
      call.off("drain", onDrain);
      call.off("cancelled", onCancel);
      resolve(ok);
    };
    const onDrain = (): void => done(true);
    const onCancel = (): void => done(false);
    call.once("drain", onDrain);
    call.once("cancelled", onCancel); // drain never comes after a cancel
  });
}

/**
 * A server stream: authenticated, registered so that revocation or expiry of the caller's credential ends it
 * with UNAUTHENTICATED and shutdown with UNAVAILABLE; `fn` runs until done or `signal` aborts.
 */
export function serverStream<Req, Res>(
  ctx: GatewayContext,
  path: string,
  fn: (req: Req, caller: Caller, call: ServerWritableStream<Req, Res>, signal: AbortSignal) => Promise<void>,
): handleServerStreamingCall<Req, Res> {
  return (call) => {
    const abort = new AbortController();
    let ended = false;
    const finish = (err?: Partial<ServiceError>): void => {
      if (ended) return;
      ended = true;
      abort.abort();
      cleanup();
      if (err === undefined) call.end();
      // grpc-js: an 'error' event on a server stream sets its status and ends it (destroy() would not send it)
      else call.emit("error", Object.assign(new Error(err.details ?? "ended"), err));
    };
    const cleanups: (() => void)[] = [];
    const cleanup = (): void => {
      for (const c of cleanups.splice(0)) c();
    };
    call.on("cancelled", () => {
      ended = true;
      abort.abort();
      cleanup();
    });
    let caller: Caller;
    try {
      caller = callerOf(ctx, call.metadata, path);
    } catch (err) {
      finish(toServiceError(err));
      return;
    }
    cleanups.push(ctx.auth.track(caller, finish), ctx.openStream(finish));
    fn(call.request, caller, call, abort.signal).then(
      () => finish(),
      (err: unknown) => finish(toServiceError(err)),
    );
  };
}
