import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Server, ServerCredentials, type ServiceDefinition, type ServiceError, type UntypedServiceImplementation } from "@grpc/grpc-js";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema, FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import type { PackageDefinition } from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";
import { jetstreamManager } from "@nats-io/jetstream";
import { HealthImplementation } from "grpc-health-check";
import { connectTenantServer, type TenantServerOptions } from "../../identity/index.js";
import { errorMessage, JetStreamPublisher, lazyRetrying, projectRoot, type Logger } from "../core/index.js";
import { CallerAuth } from "./auth.js";
import type { GatewayContext } from "./context.js";
import { GatewayError, toServiceError } from "./errors.js";
import { metricsInterceptor } from "./metrics.js";
import { GATEWAY_SERVICES } from "./services.js";

/** The gRPC API's default port (DESIGN.md). */
export const DEFAULT_GRPC_PORT = 50051;

/** Limits and timings of the gateway (grpc-js channel options). */
const MAX_MESSAGE_BYTES = 4 * 1024 * 1024; // 4 MiB
const KEEPALIVE_TIME_MS = 30_000;
const KEEPALIVE_TIMEOUT_MS = 10_000;
/** How long a graceful shutdown waits for calls to finish after ending the streams, before forcing. */
const SHUTDOWN_GRACE_MS = 5_000;

export interface GatewayTls {
  cert: string;
  key: string;
  /** With a CA, clients must present a certificate it signed (mTLS). */
  ca?: string;
}

/** `creds`: the gateway's credential into the tenant account (the hub's own: it serves every service's calls). */
export interface StartGatewayOptions extends TenantServerOptions {
  host: string;
  port: number;
  tls?: GatewayTls;
  logger: Logger;
}

export interface Gateway {
  port: number;
  /** Calls in progress and open streams now (the status page shows them). */
  activity(): { calls: number; streams: number };
  /** Ends open streams with UNAVAILABLE, reports NOT_SERVING, lets calls finish, then stops. */
  stop(): Promise<void>;
}

/**
 * Server reflection from the real descriptor sets (`buf build`: fabric.v1, and grpc.health.v1), each file as
 * compiled. (@grpc/reflection keeps the first descriptor it sees of a file; proto-loader's per-type
 * reconstructions of a file lack its services, and clients then cannot resolve them.)
 */
function reflection(): ReflectionService {
  const files: Uint8Array[] = [];
  for (const set of ["fabric.binpb", "health.binpb"]) {
    for (const f of fromBinary(FileDescriptorSetSchema, readFileSync(join(projectRoot(), "proto", "gen", set))).file) files.push(toBinary(FileDescriptorProtoSchema, f));
  }
  return new ReflectionService({ "fabric.descriptors": { fileDescriptorProtos: files } } as unknown as PackageDefinition);
}

/**
 * The gRPC gateway: every fabric.v1 service, the standard health service (NOT_SERVING while draining) and
 * server reflection from the real descriptor set, with keepalive and message-size limits set.
 */
export async function startGateway(options: StartGatewayOptions): Promise<Gateway> {
  const log = options.logger.child({ component: "grpc" });
  const closers: (() => Promise<void> | void)[] = [];
  const close = async (): Promise<void> => {
    for (const c of closers.splice(0).reverse()) await Promise.resolve(c()).catch((err: unknown) => log.warn({ err: errorMessage(err) }, "error while stopping the gateway"));
  };
  try {
    const tenant = await connectTenantServer({ ...options, name: "fabric grpc gateway", logger: log });
    closers.push(() => tenant.close());
    const { nc, watcher } = tenant;
    const auth = new CallerAuth(watcher, options.accountKey, log);
    closers.push(() => auth.stop());
    const publisher = new JetStreamPublisher(nc);
    closers.push(() => publisher.close());

    let draining = false;
    const streams = new Set<(err: Partial<ServiceError>) => void>();
    let calls = 0;
    let callsDone: (() => void) | undefined;
    const ctx: GatewayContext = {
      nc,
      jsm: lazyRetrying(() => jetstreamManager(nc)),
      publisher,
      auth,
      logger: log,
      draining: () => draining,
      openStream: (end) => {
        streams.add(end);
        return () => streams.delete(end);
      },
      beginCall: () => {
        calls++;
        let ended = false;
        return () => {
          if (ended) return;
          ended = true;
          if (--calls === 0) callsDone?.();
        };
      },
    };

    const server = new Server({
      "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
      "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
      "grpc.keepalive_time_ms": KEEPALIVE_TIME_MS,
      "grpc.keepalive_timeout_ms": KEEPALIVE_TIMEOUT_MS,
      "grpc.keepalive_permit_without_calls": 1,
      "grpc.http2.min_ping_interval_without_data_ms": 10_000,
      interceptors: [metricsInterceptor],
    });
    const health = new HealthImplementation({ "": "SERVING" });
    health.addToServer(server);
    reflection().addToServer(server);
    for (const s of GATEWAY_SERVICES) {
      server.addService(s.definition as ServiceDefinition, s.implement(ctx) as UntypedServiceImplementation);
      health.setStatus(s.name, "SERVING");
    }
    const creds =
      options.tls === undefined
        ? ServerCredentials.createInsecure()
        : ServerCredentials.createSsl(
            options.tls.ca === undefined ? null : readFileSync(options.tls.ca),
            [{ cert_chain: readFileSync(options.tls.cert), private_key: readFileSync(options.tls.key) }],
            options.tls.ca !== undefined,
          );
    const port = await new Promise<number>((resolve, reject) => server.bindAsync(`${options.host}:${options.port}`, creds, (err, p) => (err === null ? resolve(p) : reject(err))));
    closers.push(() => server.forceShutdown());
    log.info({ port, tls: options.tls !== undefined }, "gRPC gateway listening");

    const stop = async (): Promise<void> => {
      if (draining) return;
      draining = true;
      health.setStatus("", "NOT_SERVING");
      for (const s of GATEWAY_SERVICES) health.setStatus(s.name, "NOT_SERVING");
      // tryShutdown waits for open streams forever: end them first (UNAVAILABLE: clients retry elsewhere)
      const bye = toServiceError(new GatewayError("FABRIC_ERR_UNAVAILABLE", "the gateway is shutting down"));
      for (const end of [...streams]) end(bye);
      // the drain: new calls are refused (UNAVAILABLE) while the server still answers, so Health.Check says
      // NOT_SERVING rather than failing, until the calls in progress have ended (or the grace is over)
      const graceEnds = Date.now() + SHUTDOWN_GRACE_MS;
      if (calls > 0) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, SHUTDOWN_GRACE_MS);
          callsDone = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, Math.max(0, graceEnds - Date.now()));
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
      await close();
    };
    return { port, activity: () => ({ calls, streams: streams.size }), stop };
  } catch (err) {
    await close();
    throw err;
  }
}

