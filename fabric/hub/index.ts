export { startHub, hubOptionsSchema, DEFAULT_CLIENT_PORT, DEFAULT_MONITOR_PORT, DEFAULT_LEAF_PORT, DEFAULT_CLUSTER_PORT, DEFAULT_HOST } from "./up.js";
export type { HubOptions, RunningHub, HubNode } from "./up.js";
export { hubServerConfig, writeServerConfig, HUB_JETSTREAM_DOMAIN } from "./config.js";
export type { HubNodeConfig } from "./config.js";
export { writeClusterConfigs } from "./cluster-config.js";
export type { ClusterConfigOptions } from "./cluster-config.js";
export { hubStatus } from "./status.js";
export type { HubStatus, ServerStatus, StreamStatus } from "./status.js";
export { hubCredsPath } from "./hub-creds.js";
