export {
  siteSpecSchema,
  DEFAULT_PING_INTERVAL_SEC,
  DEFAULT_PING_MAX,
  DEFAULT_LEAF_RECONNECT_MS,
  DEFAULT_EDGE_CLIENT_PORT,
  DEFAULT_EDGE_MONITOR_PORT,
  DEFAULT_EDGE_MAX_MEMORY_BYTES,
} from "./site-spec.js";
export type { SiteSpec, SiteSpecInput } from "./site-spec.js";
export { parseSiteSpec, edgeServerConfig, checkSiteFiles, writeEdgeServerConfig } from "./edge-config.js";
export {
  SITE_STREAM_KINDS,
  DEFAULT_SITE_STREAMS,
  EDGE_STREAMS,
  OVERFLOW_POLICIES,
  DEFAULT_OVERFLOW,
  EVENTS_BUFFER_SHARE,
  SOURCE_HEARTBEAT_MS,
  bufferSchema,
  bufferBytes,
  edgeStreamConfig,
  edgeSourceConsumerConfig,
  hubSiteSource,
  siteSubjectTransforms,
  withSiteSource,
  withoutSiteSource,
  sourcedSites,
} from "./site-streams.js";
export type { SiteStreamKind, OverflowPolicy, BufferSpec, BufferSpecInput, SiteSource, SubjectTransform } from "./site-streams.js";
export { siteReportSchema, siteRegistrationSchema, sourceRestartRequestSchema } from "./site-report.js";
export type { SiteReport, SiteStreamReport, SiteRegistration } from "./site-report.js";
