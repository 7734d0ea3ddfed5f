export { REGION_STREAM_KINDS, regionCopyStream, readRegionLinks, putRegionLink, removeRegionLink, regionLinksFile, linkCredsFile, regionLinkSchema } from "./links.js";
export type { RegionLink, RegionLinkInput, RegionStream, RegionStreamKind } from "./links.js";
export { startRegionLinks } from "./runner.js";
export type { RegionLeafRemote, RegionLinksRunner } from "./runner.js";
export { regionLinksStatus, discoverRegionLinks, linksToShow } from "./status.js";
export type { RegionLinkStatus, RegionStreamStatus, LinkToShow } from "./status.js";
export { regionMetrics } from "./metrics.js";
