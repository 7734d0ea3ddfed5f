import { FabricError, type FabricErrorOptions } from "../fabric/core/index.js";

export type EdgeErrorCode =
  /** The agent's data directory holds something it cannot use. */
  | "FABRIC_ERR_EDGE_STATE"
  /** The site could not get, or apply, the hub's account JWTs. */
  | "FABRIC_ERR_EDGE_TRUST"
  /** The hub did not answer (first start needs it). */
  | "FABRIC_ERR_EDGE_HUB_UNREACHABLE"
  /** The site's streams or their sourcing consumers could not be set up. */
  | "FABRIC_ERR_EDGE_STREAMS";

export class EdgeError extends FabricError {
  constructor(code: EdgeErrorCode, message: string, options: FabricErrorOptions = {}) {
    super(code, message, options);
  }
}
