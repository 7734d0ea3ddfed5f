export { HUB_STREAMS, HUB_KV_BUCKETS, REJECT_REASON_HEADER, ensureHubStreams } from "./definitions.js";
export type { StreamDefinition, EnsureResult } from "./definitions.js";
