import { FabricError, type FabricErrorOptions } from "../../fabric/core/index.js";

/** An external identity (an IdP token) was refused, or the external identity setup is wrong. */
export class ExternalIdentityError extends FabricError {
  constructor(
    code:
      | "FABRIC_ERR_EXTERNAL_TOKEN_INVALID"
      | "FABRIC_ERR_EXTERNAL_TOKEN_EXPIRED"
      | "FABRIC_ERR_EXTERNAL_UNKNOWN_ISSUER"
      | "FABRIC_ERR_EXTERNAL_NO_ROLE"
      | "FABRIC_ERR_EXTERNAL_REVOKED"
      | "FABRIC_ERR_EXTERNAL_JWKS_UNAVAILABLE"
      | "FABRIC_ERR_EXTERNAL_CONFIG",
    message: string,
    options: FabricErrorOptions = {},
  ) {
    super(code, message, options);
  }
}
