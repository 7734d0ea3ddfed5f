import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { errorMessage } from "./errors.js";
import type { Logger } from "./logger.js";
import { renderMetrics } from "./metrics.js";

/** Where the hub's metrics are served (DESIGN.md); 9465 is the status page's; an edge, `fabric ingress` and `fabric worker` have ports of their own, so all fit on one machine. */
export const DEFAULT_METRICS_PORT = 9464;
export const DEFAULT_EDGE_METRICS_PORT = 9466;
/** `fabric ingress`, `fabric worker` and `fabric sink` processes of their own: ports of their own by default too. */
export const DEFAULT_INGRESS_METRICS_PORT = 9467;
export const DEFAULT_WORKER_METRICS_PORT = 9468;
/** `fabric sink postgres`, a sink process of its own. */
export const DEFAULT_SINK_METRICS_PORT = 9469;
/** Metrics are for the machine's own scraper unless told otherwise. */
export const DEFAULT_METRICS_HOST = "127.0.0.1";

/** A handler of one path on the metrics server (a status page, say). */
export type MetricsRoute = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

export interface MetricsServerOptions {
  host?: string;
  /** 0 lets the system pick; the server's `port` says which. */
  port: number;
  logger: Logger;
  /** More paths served next to `/metrics` (exact path, query ignored). */
  routes?: Readonly<Record<string, MetricsRoute>>;
  /** What `/metrics` answers; default this process's registry. */
  metrics?: () => Promise<{ contentType: string; body: string }>;
}

export interface MetricsServer {
  port: number;
  /** `http://host:port/metrics`. */
  url: string;
  stop(): Promise<void>;
}

/** Serves `GET /metrics` in Prometheus text format (and `routes`); anything else is 404. */
export async function startMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  const host = options.host ?? DEFAULT_METRICS_HOST;
  const log = options.logger.child({ component: "metrics" });
  const metrics = options.metrics ?? renderMetrics;
  const routes: Readonly<Record<string, MetricsRoute>> = { ...options.routes, "/metrics": serveMetrics(metrics) };
  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0] ?? "/";
    const route = Object.hasOwn(routes, path) ? routes[path] : undefined;
    if (route === undefined) {
      res.writeHead(404, { "content-type": "text/plain; charset=utf-8" }).end("not found: the metrics are at /metrics\n");
      return;
    }
    Promise.resolve()
      .then(() => route(req, res))
      .catch((err: unknown) => {
        log.warn({ err: errorMessage(err), path }, "metrics server request failed");
        if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain; charset=utf-8" });
        res.end("internal error\n");
      });
  });
  server.keepAliveTimeout = 65_000; // longer than Prometheus keeps an idle scrape connection
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const shown = host.includes(":") ? `[${host}]` : host === "0.0.0.0" ? "127.0.0.1" : host;
  log.info({ host, port }, "metrics served");
  return {
    port,
    url: `http://${shown}:${port}/metrics`,
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function serveMetrics(metrics: () => Promise<{ contentType: string; body: string }>): MetricsRoute {
  return async (req, res) => {
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain; charset=utf-8" }).end("method not allowed\n");
      return;
    }
    const m = await metrics();
    res.writeHead(200, { "content-type": m.contentType });
    res.end(req.method === "HEAD" ? undefined : m.body);
  };
}
