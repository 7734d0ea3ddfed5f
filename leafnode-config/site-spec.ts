import { z } from "zod";
import { TOKEN_PATTERN } from "../fabric/core/index.js";

/** A leaf remote is told to ping often enough that a silent WAN cut (no FIN) is seen within seconds. */
export const DEFAULT_PING_INTERVAL_SEC = 2; // 2 s
/** Pings unanswered before the link is declared dead: a silent cut is noticed after 4-6 s. */
export const DEFAULT_PING_MAX = 2;
/** How soon a dropped leaf link is dialled again (a connection attempt to the hub, cheap while it is away). */
export const DEFAULT_LEAF_RECONNECT_MS = 1_000; // 1 s
export const DEFAULT_EDGE_CLIENT_PORT = 4222;
export const DEFAULT_EDGE_MONITOR_PORT = 8222;
/** JetStream memory the edge server may use (its streams are on file). */
export const DEFAULT_EDGE_MAX_MEMORY_BYTES = 64 * 1024 * 1024; // 64 MiB

const port = z.number().int().min(-1, "ports are -1 (the server picks) to 65535").max(65_535, "ports are -1 (the server picks) to 65535");
const publicKey = (kind: string, prefix: string) => z.string().regex(new RegExp(`^${prefix}[A-Z2-7]{55}$`), `not ${kind} public key (${prefix}…, 56 characters)`);
const path = z.string().min(1, "give a file path");

/** A hub leaf URL: nats-leaf:// (or tls://, nats://, ws://, wss://) with a host and a port. */
const leafUrl = z.string().refine((u) => {
  try {
    const url = new URL(u);
    return ["nats-leaf:", "tls:", "nats:", "ws:", "wss:"].includes(url.protocol) && url.hostname !== "" && url.port !== "";
  } catch {
    return false;
  }
}, "not a leaf URL: use nats-leaf://HOST:PORT (or tls://, ws://, wss://)");

export const siteSpecSchema = z.strictObject({
  /** The site's name: its JetStream domain, its subjects' second token, its server name's suffix. */
  site: z.string().max(64).regex(TOKEN_PATTERN, "site names are 1-64 lowercase letters, digits, '_' and '-'"),
  /** Unique among the fabric's servers; default `edge-<site>`. */
  serverName: z.string().regex(/^[A-Za-z0-9_-]+$/, "server names are letters, digits, '_' and '-'").optional(),
  hub: z.strictObject({
    urls: z.array(leafUrl).min(1, "give at least one hub leaf URL"),
    /** The site's leaf credential (`fabric-id issue leaf --site S`). */
    creds: path,
    tls: z
      .strictObject({
        /** CA to verify the hub with. */
        ca: path.optional(),
        /** Client certificate and key, when the hub asks for one (mTLS). */
        cert: path.optional(),
        key: path.optional(),
      })
      .refine((t) => (t.cert === undefined) === (t.key === undefined), "give cert and key together")
      .optional(),
  }),
  /** What the site's server trusts while offline: the operator, the system account and the tenant account's JWTs. */
  trust: z.strictObject({
    operatorJwt: z.string().min(1, "give the operator JWT"),
    systemAccount: publicKey("an account", "A"),
    account: publicKey("an account", "A"),
    accounts: z.record(publicKey("an account", "A"), z.string().min(1)),
  }),
  listen: z
    .strictObject({
      host: z.string().min(1).default("0.0.0.0"),
      port: port.default(DEFAULT_EDGE_CLIENT_PORT),
      monitorPort: port.default(DEFAULT_EDGE_MONITOR_PORT),
    })
    .prefault({}),
  /** Where JetStream keeps the site's streams and the resolver its account JWTs. */
  storeDir: path,
  resolverDir: path,
  /** The server writes the ports it picked here (for port -1). */
  portsDir: path.optional(),
  /** The most the site's JetStream may store on disk (at least the streams' buffers). */
  maxFileStoreBytes: z.number().int().positive("maxFileStoreBytes must be positive"),
  maxMemoryStoreBytes: z.number().int().positive().default(DEFAULT_EDGE_MAX_MEMORY_BYTES),
  pingIntervalSec: z.number().int().min(1).max(120).default(DEFAULT_PING_INTERVAL_SEC),
  pingMax: z.number().int().min(1).max(10).default(DEFAULT_PING_MAX),
  reconnectMs: z.number().int().min(100).max(60_000).default(DEFAULT_LEAF_RECONNECT_MS),
});
export type SiteSpec = z.infer<typeof siteSpecSchema>;
export type SiteSpecInput = z.input<typeof siteSpecSchema>;
