import { z } from "zod";
import { TOKEN_PATTERN } from "../fabric/core/index.js";
import { bufferSchema, DEFAULT_EDGE_CLIENT_PORT, DEFAULT_EDGE_MONITOR_PORT } from "../leafnode-config/index.js";

/** A site's buffer when none is given: 10 GiB for 7 days. */
export const DEFAULT_BUFFER_BYTES = 10 * 1024 ** 3; // 10 GiB
export const DEFAULT_BUFFER_MAX_AGE_MS = 7 * 86_400_000; // 7 d
/** How often the agent reports on `$FABRIC.edge.<site>.status`. */
export const DEFAULT_REPORT_EVERY_MS = 2_000; // 2 s
/** How often the agent looks at its leaf link (the server's /leafz). */
export const LINK_CHECK_EVERY_MS = 250; // 250 ms
/** While the link is up, the account JWTs are fetched again this often (and at once whenever the link returns). */
export const DEFAULT_TRUST_SYNC_EVERY_MS = 10_000; // 10 s
/** How long a start waits for the hub to hand out fresh trust before it goes on with what it has. */
export const DEFAULT_START_TRUST_TIMEOUT_MS = 5_000; // 5 s
/** On the very first start there is nothing to go on with: wait longer for the hub. */
export const FIRST_START_TRUST_TIMEOUT_MS = 60_000; // 1 min

const port = z.number().int().min(0, "ports are 0 (the system picks) to 65535").max(65_535, "ports are 0 (the system picks) to 65535");

export const edgeOptionsSchema = z.strictObject({
  site: z.string().max(64).regex(TOKEN_PATTERN, "site names are 1-64 lowercase letters, digits, '_' and '-'"),
  /** The hub's leaf URLs (nats-leaf://HOST:7422). */
  hub: z.array(z.string().min(1)).min(1, "give at least one hub URL"),
  /** The site's leaf credential file (`fabric-id issue leaf --site S`). */
  creds: z.string().min(1, "give the leaf credential file"),
  dataDir: z.string().min(1),
  host: z.string().min(1).default("0.0.0.0"),
  port: port.default(DEFAULT_EDGE_CLIENT_PORT),
  monitorPort: port.default(DEFAULT_EDGE_MONITOR_PORT),
  tls: z.strictObject({ ca: z.string().optional(), cert: z.string().optional(), key: z.string().optional() }).optional(),
  buffer: bufferSchema.prefault({ bytes: DEFAULT_BUFFER_BYTES, maxAgeMs: DEFAULT_BUFFER_MAX_AGE_MS }),
  reportEveryMs: z.number().int().min(100).default(DEFAULT_REPORT_EVERY_MS),
  trustSyncEveryMs: z.number().int().min(500).default(DEFAULT_TRUST_SYNC_EVERY_MS),
  startTrustTimeoutMs: z.number().int().positive().default(DEFAULT_START_TRUST_TIMEOUT_MS),
  /** The same on a first start (nothing kept to go on with). */
  firstStartTrustTimeoutMs: z.number().int().positive().default(FIRST_START_TRUST_TIMEOUT_MS),
  /**
   * Windows computed at the site over its telemetry (tumbling; their source is the site's EDGE_TELEMETRY), whose
   * mergeable partials the hub sources into AGGREGATES for a hub window with `source.partials` to merge.
   */
  preAggregate: z.array(z.unknown()).default([]),
  /** The site's own MQTT ingress for legacy devices (on `host`): port 0 lets the system pick. */
  mqtt: z.strictObject({ port }).optional(),
  /** Ship raw telemetry to the hub too (turn off with pre-aggregation to send the partials only). */
  shipRawTelemetry: z.boolean().default(true),
});
export type EdgeOptions = z.infer<typeof edgeOptionsSchema>;
export type EdgeOptionsInput = z.input<typeof edgeOptionsSchema>;
