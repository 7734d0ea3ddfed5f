export { startEdge } from "./agent.js";
export { EVENTS_FIRST_MAX_MS } from "./site-link.js";
export type { RunningEdge } from "./agent.js";
export {
  edgeOptionsSchema,
  DEFAULT_BUFFER_BYTES,
  DEFAULT_BUFFER_MAX_AGE_MS,
  DEFAULT_REPORT_EVERY_MS,
  DEFAULT_TRUST_SYNC_EVERY_MS,
  DEFAULT_START_TRUST_TIMEOUT_MS,
} from "./options.js";
export type { EdgeOptions, EdgeOptionsInput } from "./options.js";
export { EdgeError } from "./errors.js";
export type { EdgeErrorCode } from "./errors.js";
export { agentInboxPrefix } from "./bootstrap.js";
