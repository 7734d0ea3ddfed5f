import { join } from "node:path";
import { createLogger, type Logger } from "../../fabric/core/index.js";
import { startHub, type RunningHub } from "../../fabric/hub/index.js";
import { Keystore, initKeystore } from "../../identity/index.js";
import type { Harness } from "./servers.js";

export interface TestHub extends RunningHub {
  dataDir: string;
  keystoreDir: string;
}

/** A silent logger for tests (FABRIC_LOG_LEVEL=debug shows everything). */
export function testLogger(): Logger {
  return createLogger({ name: "test", level: process.env["FABRIC_LOG_LEVEL"] ?? "silent" });
}

/**
 * The real fabric hub (`startHub`, what `fabric up` runs) in temp directories, on ports the servers pick,
 * bound to 127.0.0.1; stopped on dispose. Pass a keystoreDir to reuse one.
 */
export async function startTestHub(
  h: Harness,
  options: {
    nodes?: number;
    keystoreDir?: string;
    dataDir?: string;
    identityService?: boolean;
    /** Run window workers in the hub's process (default true). */
    windows?: boolean;
    /** Run the sinks defined in KV sink_defs in the hub's process (default true, as `fabric up`). */
    sinks?: boolean;
    /** Run the gRPC gateway (on a port the system picks). */
    grpc?: boolean;
    mqtt?: boolean;
    /** MQTT over TLS with this certificate and key (PEM files). */
    mqttTls?: { cert: string; key: string };
    ingress?: Record<string, unknown>;
    /** TLS (mTLS with a CA) on the leaf node listener. */
    leafTls?: { cert: string; key: string; ca?: string };
    /** Serve the status page on this address (on a port the system picks). */
    statusPage?: { host: string };
    /** The hub's logger (default: testLogger()). */
    logger?: Logger;
    /** Serve the HTTP token exchange (on a port the system picks). */
    exchange?: boolean;
    /** The hub is this region (its keystore a copy of the operator's, serving this region only). */
    region?: string;
  } = {},
): Promise<TestHub> {
  const root = h.tempDir("fabric-hub-");
  const keystoreDir = options.keystoreDir ?? join(root, "keys");
  if (!Keystore.exists(keystoreDir)) initKeystore(keystoreDir);
  const dataDir = options.dataDir ?? join(root, "data");
  const hub = await startHub(
    {
      dataDir,
      keystoreDir,
      nodes: options.nodes ?? 1,
      host: "127.0.0.1",
      port: 0,
      monitorPort: 0,
      leafPort: 0,
      clusterPort: 0,
      identityService: options.identityService ?? true,
      ...(options.leafTls === undefined ? {} : { leafTls: options.leafTls }),
      windows: options.windows ?? true,
      sinks: options.sinks ?? true,
      ...(options.grpc === true ? { grpc: { port: 0 } } : {}),
      ...(options.statusPage === undefined ? {} : { statusPage: { host: options.statusPage.host, port: 0 } }),
      ...(options.region === undefined ? {} : { region: options.region }),
      ...(options.exchange === true ? { exchange: { port: 0 } } : {}),
      ...(options.mqtt === true
        ? { mqtt: { port: 0, wsPort: 0, ingress: options.ingress ?? {}, ...(options.mqttTls === undefined ? {} : { tls: { port: 0, ...options.mqttTls } }) } }
        : {}),
    },
    options.logger ?? testLogger(),
  );
  h.defer(() => hub.stop());
  return { ...hub, dataDir, keystoreDir };
}
