import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { NatsConnection } from "@nats-io/transport-node";
import { z } from "zod";
import { errorMessage, isFabricError, listenOrAnyPort, subjects, type Logger } from "../core/index.js";
import { requestCredential, requestNonce } from "../../identity/index.js";

/** The default port of the HTTP token exchange (`fabric up --exchange-port`). */
export const DEFAULT_EXCHANGE_PORT = 9470;
/** RFC 8693's grant type and the token types the endpoint takes and gives. */
export const TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange";
const SUBJECT_TOKEN_TYPES = ["urn:ietf:params:oauth:token-type:jwt", "urn:ietf:params:oauth:token-type:id_token", "urn:ietf:params:oauth:token-type:access_token"] as const;
export const NATS_USER_JWT_TOKEN_TYPE = "urn:fabric:params:oauth:token-type:nats-user-jwt";
const MAX_BODY_BYTES = 64 * 1024;

const exchangeFormSchema = z.strictObject({
  grant_type: z.literal(TOKEN_EXCHANGE_GRANT, { error: `grant_type must be ${TOKEN_EXCHANGE_GRANT}` }),
  subject_token: z.string().min(1).max(16_384),
  subject_token_type: z.enum(SUBJECT_TOKEN_TYPES, { error: `subject_token_type must be one of ${SUBJECT_TOKEN_TYPES.join(", ")}` }),
  requested_token_type: z.literal(NATS_USER_JWT_TOKEN_TYPE).optional(),
  /** The caller's NKey user public key, and its signature (base64url) over a nonce from GET /nonce. */
  public_key: z.string().min(1).max(64),
  nonce: z.string().min(1).max(512),
  signature: z.string().min(1).max(256),
});

/** An RFC 6749 error body, with the fabric's code. */
function oauthError(code: string | undefined): { status: number; error: string } {
  switch (code) {
    case "FABRIC_ERR_EXTERNAL_TOKEN_INVALID":
    case "FABRIC_ERR_EXTERNAL_TOKEN_EXPIRED":
    case "FABRIC_ERR_EXTERNAL_UNKNOWN_ISSUER":
    case "FABRIC_ERR_EXTERNAL_REVOKED":
    case "FABRIC_ERR_NONCE_INVALID":
    case "FABRIC_ERR_NONCE_USED":
    case "FABRIC_ERR_PROOF_INVALID":
      return { status: 400, error: "invalid_grant" };
    case "FABRIC_ERR_EXTERNAL_NO_ROLE":
      return { status: 403, error: "unauthorized_client" };
    case "FABRIC_ERR_PROVISION":
    case "FABRIC_ERR_INVALID_INPUT":
      return { status: 400, error: "invalid_request" };
    case "FABRIC_ERR_EXTERNAL_JWKS_UNAVAILABLE":
    case "FABRIC_ERR_UNAVAILABLE":
      return { status: 503, error: "temporarily_unavailable" };
    default:
      return { status: 500, error: "server_error" };
  }
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > MAX_BODY_BYTES) throw Object.assign(new Error(`request body over ${MAX_BODY_BYTES} bytes`), { code: "FABRIC_ERR_INVALID_INPUT" });
    chunks.push(c);
  }
  return Buffer.concat(chunks).toString("utf8");
}

const send = (res: ServerResponse, status: number, body: unknown): void => {
  res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store", pragma: "no-cache" });
  res.end(JSON.stringify(body));
};

export interface TokenExchangeHttp {
  url: string;
  port: number;
  stop(): Promise<void>;
}

/**
 * The identity service's token exchange over HTTP (RFC 8693): `GET /nonce` gives a nonce for the exchange;
 * `POST /token` (form-encoded or JSON) with the grant type, `subject_token` (the identity provider's JWT) and
 * the caller's `public_key` with its `signature` over the nonce gives `access_token`, a NATS user JWT for that
 * key (`issued_token_type` urn:fabric:params:oauth:token-type:nats-user-jwt, `expires_in`). Refusals are RFC 6749
 * error bodies with `fabric_error_code`. Forwarded to the identity service over NATS.
 */
export async function startTokenExchangeHttp(o: { nc: NatsConnection; host: string; port: number; orAnyPort?: boolean; logger: Logger }): Promise<TokenExchangeHttp> {
  const log = o.logger.child({ component: "token-exchange-http" });
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? "/", "http://x");
    if (req.method === "GET" && url.pathname === "/nonce") {
      send(res, 200, { nonce: await requestNonce(o.nc, "exchange") });
      return;
    }
    if (req.method !== "POST" || url.pathname !== "/token") {
      send(res, 404, { error: "invalid_request", error_description: "POST /token (token exchange) or GET /nonce" });
      return;
    }
    const text = await readBody(req);
    const json = (req.headers["content-type"] ?? "").includes("application/json");
    let raw: unknown;
    try {
      raw = json ? JSON.parse(text) : Object.fromEntries(new URLSearchParams(text));
    } catch {
      send(res, 400, { error: "invalid_request", error_description: "the body is not JSON", fabric_error_code: "FABRIC_ERR_INVALID_INPUT" });
      return;
    }
    const form = exchangeFormSchema.safeParse(raw);
    if (!form.success) {
      const issue = form.error.issues[0];
      send(res, 400, { error: "invalid_request", error_description: `${issue?.path.join(".") || "body"}: ${issue?.message ?? "invalid"}`, fabric_error_code: "FABRIC_ERR_INVALID_INPUT" });
      return;
    }
    const f = form.data;
    const r = await requestCredential(o.nc, subjects.identity.exchange, { token: f.subject_token, publicKey: f.public_key, nonce: f.nonce, signature: f.signature });
    send(res, 200, {
      access_token: r.jwt,
      issued_token_type: NATS_USER_JWT_TOKEN_TYPE,
      token_type: "N_A",
      ...(r.expiresAt === undefined ? {} : { expires_in: Math.max(0, r.expiresAt - Math.floor(Date.now() / 1000)) }),
    });
  };
  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      const code = isFabricError(err) ? err.code : (err as { code?: string }).code;
      const e = oauthError(code);
      if (e.status === 500) log.error({ err: errorMessage(err) }, "token exchange failed");
      send(res, e.status, { error: e.error, error_description: errorMessage(err), fabric_error_code: code ?? "FABRIC_ERR_INTERNAL" });
    });
  });
  const port = await listenOrAnyPort(server, { host: o.host, port: o.port, orAnyPort: o.orAnyPort === true, what: "token exchange", flag: "--exchange-port", logger: log });
  const url = `http://${o.host.includes(":") ? `[${o.host}]` : o.host}:${port}`;
  log.info({ url }, "token exchange listening (POST /token, GET /nonce)");
  return { url, port, stop: () => new Promise<void>((r) => server.close(() => r())) };
}
