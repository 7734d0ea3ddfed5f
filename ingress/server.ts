import { randomBytes } from "node:crypto";
import { createServer as createHttpServer, type Server as HttpServer } from "node:http";
import { createServer as createNetServer, type Server as NetServer, type Socket } from "node:net";
import { readFileSync } from "node:fs";
import { createServer as createTlsServer, type TLSSocket } from "node:tls";
import type { Duplex } from "node:stream";
import { WebSocketServer, createWebSocketStream } from "ws";
import { errorMessage, JetStreamPublisher, parseInput, type Logger } from "../fabric/core/index.js";
import { connectTenantServer, createKeyPair, exchangeToken, validateUserJwt, type TenantServerOptions } from "../identity/index.js";
import { createAuthenticator } from "./auth.js";
import { ingressOptionsSchema, MAX_SESSION_EXPIRY_SEC, type IngressOptions } from "./config.js";
import { MqttConnection } from "./connection.js";
import { Registry, rejectedPublisher, TAKEOVER_SUBJECT_PREFIX, WillScheduler, willPublisher, type IngressContext } from "./context.js";
import { ReasonCode } from "./errors.js";
import { StreamLocator } from "./locator.js";
import { createTopicMapper } from "./mapping.js";
import { IngressStore } from "./store.js";
import { DurableWills } from "./wills.js";

/** `servers`: the hub (or leaf) to connect to; `creds`: a credential of role `ingress` in the tenant account. */
export interface StartIngressOptions extends TenantServerOptions {
  config: IngressOptions;
  logger: Logger;
}

export interface Ingress {
  /** The ports listening (0 where a listener is off). */
  ports: { tcp: number; tls: number; ws: number };
  connections(): number;
  stop(): Promise<void>;
}

function portOf(server: NetServer | HttpServer | undefined): number {
  const a = server?.address();
  return a !== null && a !== undefined && typeof a !== "string" ? (a).port : 0;
}

async function listen(server: NetServer | HttpServer, port: number, host: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
}

/**
 * The MQTT ingress: MQTT 3.1, 3.1.1 and 5.0 over TCP, TLS and WebSocket, in front of the hub's JetStream.
 * Device credentials are verified against the account JWTs as pushed (a revocation disconnects within
 * milliseconds); a QoS 1/2 acknowledgement means the message is stored.
 */
export async function startIngress(options: StartIngressOptions): Promise<Ingress> {
  const config = parseInput(ingressOptionsSchema, options.config, "ingress config");
  const log = options.logger.child({ component: "ingress" });
  const instanceId = randomBytes(6).toString("hex");
  const closers: (() => Promise<void> | void)[] = [];
  const stop = async (): Promise<void> => {
    for (const c of closers.splice(0).reverse()) {
      try {
        await c();
      } catch (err) {
        log.warn({ err: errorMessage(err) }, "error while stopping the ingress");
      }
    }
  };
  try {
    const tenant = await connectTenantServer({ ...options, name: `fabric ingress ${instanceId}`, logger: log });
    closers.push(() => tenant.close());
    const { nc, watcher } = tenant;

    const publisher = new JetStreamPublisher(nc);
    closers.push(() => publisher.close());
    const store = await IngressStore.open(nc);
    const wills = new WillScheduler(log);
    closers.push(() => wills.stop());
    const durableWills = await DurableWills.open(nc, instanceId, log);
    closers.push(() => durableWills.stop());
    const registry = new Registry(nc, instanceId, wills);
    const ctx: IngressContext = {
      config,
      limits: { maxSessionExpirySec: MAX_SESSION_EXPIRY_SEC },
      nc,
      publisher,
      store,
      auth: createAuthenticator(watcher, options.accountKey, async (token) => (await exchangeToken(nc, token, createKeyPair("user"))).jwt),
      mapper: createTopicMapper(config.mappings, config.formats),
      locator: new StreamLocator(nc),
      registry,
      wills,
      durableWills,
      log,
      rejected: rejectedPublisher(publisher, log),
    };
    const publishWill = willPublisher(ctx);
    wills.bind(publishWill, durableWills);
    durableWills.start(publishWill, (jwt) => validateUserJwt(jwt, watcher), () => ({ connections: registry.size }));
    const takeovers = nc.subscribe(`${TAKEOVER_SUBJECT_PREFIX}.*`, {
      callback: (err, msg) => {
        if (err !== null) return;
        try {
          const { instance, resume } = msg.json<{ instance: string; resume?: boolean }>();
          registry.takeoverElsewhere(msg.subject, instance, resume === true);
        } catch {
          // not ours
        }
      },
    });
    closers.push(() => takeovers.unsubscribe());
    // a revocation (or any account change) re-checks every connected client of the account at once
    const unwatch = watcher.onUpdate((claims) => {
      if (claims.sub !== options.accountKey) return;
      for (const conn of registry.connections()) conn.recheck();
    });
    closers.push(unwatch);

    const accept = (socket: Duplex, remote: string): void => {
      if (registry.size >= config.maxConnections) {
        log.warn({ remote }, "connection limit reached: refused");
        socket.destroy();
        return;
      }
      const conn = new MqttConnection(ctx, socket, remote);
      registry.add(conn);
      socket.once("close", () => registry.release(conn));
    };
    const remoteOf = (s: Socket | TLSSocket): string => `${s.remoteAddress ?? "?"}:${s.remotePort ?? 0}`;
    const servers: (NetServer | HttpServer)[] = [];
    closers.push(async () => {
      for (const conn of registry.connections()) conn.kick(ReasonCode.ServerShuttingDown, "server shutting down");
      await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    });
    let tcp: NetServer | undefined;
    if (config.tcp !== undefined) {
      tcp = createNetServer({ noDelay: true }, (s) => accept(s, remoteOf(s)));
      await listen(tcp, config.tcp.port, config.tcp.host);
      servers.push(tcp);
    }
    let tls: NetServer | undefined;
    if (config.tls !== undefined) {
      const t = config.tls;
      tls = createTlsServer(
        { cert: readFileSync(t.cert), key: readFileSync(t.key), ...(t.ca === undefined ? {} : { ca: readFileSync(t.ca) }), requestCert: t.requestCert, rejectUnauthorized: t.requestCert },
        (s) => accept(s, remoteOf(s)),
      );
      await listen(tls, t.port, t.host);
      servers.push(tls);
    }
    let http: HttpServer | undefined;
    if (config.ws !== undefined) {
      const w = config.ws;
      http = createHttpServer((_, res) => res.writeHead(426, { "Content-Type": "text/plain" }).end("MQTT over WebSocket: upgrade required\n"));
      const wss = new WebSocketServer({
        server: http,
        path: w.path,
        maxPayload: config.maxPacketSize + 8,
        handleProtocols: (protocols) => (protocols.has("mqtt") ? "mqtt" : protocols.has("mqttv3.1") ? "mqttv3.1" : false),
      });
      wss.on("connection", (ws, req) => accept(createWebSocketStream(ws), `${req.socket.remoteAddress ?? "?"}:${req.socket.remotePort ?? 0}`));
      closers.push(() => new Promise<void>((r) => wss.close(() => r())));
      await listen(http, w.port, w.host);
      servers.push(http);
    }
    const ports = { tcp: portOf(tcp), tls: portOf(tls), ws: portOf(http) };
    log.info({ ports, instance: instanceId }, "MQTT ingress listening");
    return { ports, connections: () => registry.size, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
