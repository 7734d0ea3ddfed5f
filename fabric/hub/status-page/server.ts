import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { errorMessage, listenOrAnyPort, type Logger } from "../../core/index.js";
import { ensureStatusToken, hasToken, isLoopbackOnly } from "./access.js";
import type { StatusSource } from "./data.js";
import { statusPageDocument } from "./page.js";

/** The status page's port when none is given: next to the fabric's Prometheus metrics (9464). */
export const DEFAULT_STATUS_PORT = 9465;
/** It listens on loopback unless told otherwise (then it asks for the token). */
export const DEFAULT_STATUS_HOST = "127.0.0.1";
const REALM = "fabric status";

export type RequestHandler = (req: IncomingMessage, res: ServerResponse) => void;

export interface StatusPageRoutesOptions {
  source: StatusSource;
  /** The token a request must show (HTTP Basic password or Bearer); undefined: open (a loopback bind). */
  token: string | undefined;
  logger: Logger;
}

function send(res: ServerResponse, status: number, type: string, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { "Content-Type": type, "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", ...headers });
  res.end(body);
}

/**
 * The page's routes, `/` (the page) and `/status.json` (its data), read-only (GET and HEAD), each checking the
 * token itself: they may be mounted on another HTTP server (the metrics server) as they are.
 */
export function statusPageRoutes(o: StatusPageRoutesOptions): Record<string, RequestHandler> {
  const guard =
    (handler: RequestHandler): RequestHandler =>
    (req, res) => {
      if (req.method !== "GET" && req.method !== "HEAD") return send(res, 405, "text/plain; charset=utf-8", "read-only: GET or HEAD\n", { Allow: "GET, HEAD" });
      if (o.token !== undefined && !hasToken(req, o.token)) {
        return send(res, 401, "text/plain; charset=utf-8", "the status page needs its token (HTTP Basic password, or Authorization: Bearer)\n", {
          "WWW-Authenticate": `Basic realm="${REALM}", charset="UTF-8"`,
        });
      }
      handler(req, res);
    };
  return {
    "/": guard((_req, res) => {
      const doc = statusPageDocument();
      send(res, 200, "text/html; charset=utf-8", doc.html, { "Content-Security-Policy": doc.csp });
    }),
    "/status.json": guard((_req, res) => {
      o.source.snapshot().then(
        (data) => send(res, 200, "application/json", JSON.stringify(data)),
        (err: unknown) => {
          o.logger.warn({ err: errorMessage(err) }, "status page: no snapshot");
          send(res, 503, "application/json", JSON.stringify({ error: errorMessage(err) }));
        },
      );
    }),
  };
}

export interface StartStatusPageOptions {
  host: string;
  /** 0: the system picks. */
  port: number;
  /** The port is the default, not asked for: when it is taken, one the system picks. */
  orAnyPort?: boolean;
  /** Where the token file is kept (made on the first start that binds beyond loopback). */
  dataDir: string;
  source: StatusSource;
  logger: Logger;
}

export interface StatusPage {
  port: number;
  url: string;
  /** The file holding the token a request must show; undefined on loopback (no token asked). */
  tokenFile: string | undefined;
  /** Stops listening and closes the source. */
  stop(): Promise<void>;
}

/**
 * The status page on an HTTP server of its own. On loopback (127.0.0.1, ::1, localhost) it is open; on any other
 * address every request must show the token of `<dataDir>/status-page.token` (logged by path, never by value).
 */
export async function startStatusPage(o: StartStatusPageOptions): Promise<StatusPage> {
  const log = o.logger.child({ component: "status-page" });
  const access = isLoopbackOnly(o.host) ? undefined : ensureStatusToken(o.dataDir);
  const routes = statusPageRoutes({ source: o.source, token: access?.token, logger: log });
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://status.invalid").pathname;
    const route = routes[path === "/index.html" ? "/" : path];
    if (route === undefined) return send(res, 404, "text/plain; charset=utf-8", "not found\n");
    route(req, res);
  });
  server.keepAliveTimeout = 5_000;
  const port = await listenOrAnyPort(server, { host: o.host, port: o.port, orAnyPort: o.orAnyPort === true, what: "status page", flag: "--status-port", logger: log });
  const host = o.host.includes(":") ? `[${o.host}]` : o.host;
  const url = `http://${o.host === "0.0.0.0" || o.host === "::" ? "127.0.0.1" : host}:${port}/`;
  log.info({ url, ...(access === undefined ? { access: "loopback, no credential" } : { access: "token required", tokenFile: access.path }) }, "status page listening");
  return {
    port,
    url,
    tokenFile: access?.path,
    stop: async () => {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await o.source.close();
    },
  };
}
