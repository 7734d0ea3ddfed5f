export { HUB_STREAMS, HUB_KV_BUCKETS, REJECT_REASON_HEADER, MQTT_RETAINED_STREAM, MQTT_RETAINED_PREFIX, MQTT_SESSIONS_BUCKET, ensureHubStreams } from "./definitions.js";
export type { StreamDefinition, EnsureResult } from "./definitions.js";
