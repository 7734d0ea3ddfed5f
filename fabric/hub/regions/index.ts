export { REGION_STREAM_KINDS, regionCopyStream, readRegionLinks, putRegionLink, removeRegionLink, regionLinksFile, linkCredsFile, regionLinkSchema } from "./links.js";
export type { RegionLink, RegionLinkInput, RegionStream, RegionStreamKind } from "./links.js";
export { startRegionLinks, regionLinksStatus, discoverRegionLinks, linksToShow } from "./runner.js";
export type { RegionLeafRemote, RegionLinkStatus, RegionStreamStatus, RegionLinksRunner } from "./runner.js";
