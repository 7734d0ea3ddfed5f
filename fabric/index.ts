// The hub's public entry. The shared kernel has its own: fabric/core/index.ts.
export {
  startHub,
  hubOptionsSchema,
  hubServerConfig,
  writeServerConfig,
  writeClusterConfigs,
  hubStatus,
  hubCredsPath,
  HUB_JETSTREAM_DOMAIN,
  DEFAULT_CLIENT_PORT,
  DEFAULT_MONITOR_PORT,
  DEFAULT_LEAF_PORT,
  DEFAULT_CLUSTER_PORT,
  DEFAULT_HOST,
} from "./hub/index.js";
export type { HubOptions, RunningHub, HubNode, HubNodeConfig, ClusterConfigOptions, HubStatus, ServerStatus, StreamStatus } from "./hub/index.js";
