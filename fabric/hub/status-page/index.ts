export { createStatusSource, recentRevocations, rateOf, MIN_SAMPLE_INTERVAL_MS, RATE_WINDOW_MS, RECENT_REVOCATIONS } from "./data.js";
export type { StatusPageData, StatusPageSite, StatusPageStream, StatusPageRevocation, StatusPageWindow, StatusSource, StatusSourceOptions, GrpcActivity } from "./data.js";
export { startStatusPage, statusPageRoutes, DEFAULT_STATUS_PORT, DEFAULT_STATUS_HOST } from "./server.js";
export type { StartStatusPageOptions, StatusPage, StatusPageRoutesOptions, RequestHandler } from "./server.js";
export { isLoopbackOnly, ensureStatusToken, STATUS_TOKEN_FILE, STATUS_BASIC_USER } from "./access.js";
