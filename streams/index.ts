export { HUB_STREAMS, HUB_KV_BUCKETS, REJECT_REASON_HEADER, MQTT_RETAINED_STREAM, MQTT_RETAINED_PREFIX, MQTT_SESSIONS_BUCKET, MQTT_WILLS_BUCKET, MQTT_INSTANCES_BUCKET, MQTT_INSTANCE_TTL_MS, ensureHubStreams } from "./definitions.js";
export type { StreamDefinition, EnsureResult } from "./definitions.js";
