import { z } from "zod";
import { OVERFLOW_POLICIES, SITE_STREAM_KINDS } from "./site-streams.js";

const streamReportSchema = z.strictObject({
  stream: z.string(),
  messages: z.number().int().nonnegative(),
  bytes: z.number().int().nonnegative(),
  maxBytes: z.number().int(),
  overflow: z.enum(OVERFLOW_POLICIES),
  /** Messages stored at the site and not yet acknowledged by the hub. */
  backlog: z.number().int().nonnegative(),
  /** Age of the oldest of them (ms), 0 without a backlog. */
  oldestBacklogMs: z.number().int().nonnegative(),
  /** Messages the buffer dropped (drop-oldest) before the hub had them, since the agent started. */
  dropped: z.number().int().nonnegative(),
  /** The buffer is full: with reject-new, publishers are refused now. */
  full: z.boolean(),
});
export type SiteStreamReport = z.infer<typeof streamReportSchema>;

/** What a site's agent reports on `$FABRIC.edge.<site>.status`: its link, its buffers' backlog, its trust. */
export const siteReportSchema = z.strictObject({
  site: z.string(),
  /** When the report was made (ms since epoch, the site's clock). */
  at: z.number().int(),
  link: z.enum(["up", "down"]),
  /** Since when the link is as it is (ms since epoch). */
  linkSince: z.number().int(),
  streams: z.strictObject({ events: streamReportSchema, telemetry: streamReportSchema, aggregates: streamReportSchema.optional() }),
  /** The streams the site ships to the hub. */
  shipping: z.array(z.enum(SITE_STREAM_KINDS)),
  /** When the site last fetched the account JWTs from the hub (0: never, this run). */
  trustSyncedAt: z.number().int(),
  /** The leaf server's restarts by the agent's supervisor. */
  serverRestarts: z.number().int().nonnegative(),
  /** Stalled sources restarted (a backlog the hub stopped taking while the link was up): by a consumer reset, or by the hub at the site's request. */
  sourceRestarts: z.number().int().nonnegative(),
});
export type SiteReport = z.infer<typeof siteReportSchema>;

/** What a site's agent sends on `$FABRIC.edge.<site>.register`: the kinds of its streams the hub should source. */
export const siteRegistrationSchema = z.strictObject({ streams: z.array(z.enum(SITE_STREAM_KINDS)).min(1) });
export type SiteRegistration = z.infer<typeof siteRegistrationSchema>;

/** What a site's agent sends on `$FABRIC.edge.<site>.restart`: the kinds whose hub sources should start again. */
export const sourceRestartRequestSchema = z.strictObject({ streams: z.array(z.enum(SITE_STREAM_KINDS)).min(1) });
export type SourceRestartRequest = z.infer<typeof sourceRestartRequestSchema>;
