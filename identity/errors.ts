import { FabricError, type FabricErrorOptions } from "../fabric/core/index.js";

/** A key that does not parse, has a bad checksum or the wrong kind. */
export class InvalidKeyError extends FabricError {
  constructor(message: string, options: FabricErrorOptions = {}) {
    super("FABRIC_ERR_INVALID_KEY", message, options);
  }
}

/** Why a credential was refused; stable codes for every boundary to map. */
export type CredentialErrorCode =
  | "FABRIC_ERR_CREDENTIAL_MALFORMED"
  | "FABRIC_ERR_CREDENTIAL_SIGNATURE"
  | "FABRIC_ERR_CREDENTIAL_UNTRUSTED_ISSUER"
  | "FABRIC_ERR_CREDENTIAL_EXPIRED"
  | "FABRIC_ERR_CREDENTIAL_NOT_YET_VALID"
  | "FABRIC_ERR_CREDENTIAL_REVOKED"
  | "FABRIC_ERR_CREDENTIAL_WRONG_ACCOUNT"
  | "FABRIC_ERR_CREDENTIAL_PROOF";

export class CredentialError extends FabricError {
  declare readonly code: CredentialErrorCode;
  constructor(code: CredentialErrorCode, message: string, options: FabricErrorOptions = {}) {
    super(code, message, options);
  }
}

/** The keystore is missing, unreadable, inconsistent or locked. */
export class KeystoreError extends FabricError {
  constructor(
    code: "FABRIC_ERR_KEYSTORE_MISSING" | "FABRIC_ERR_KEYSTORE_CORRUPT" | "FABRIC_ERR_KEYSTORE_EXISTS" | "FABRIC_ERR_KEYSTORE_LOCKED" | "FABRIC_ERR_NOT_FOUND",
    message: string,
    options: FabricErrorOptions = {},
  ) {
    super(code, message, options);
  }
}

/** An issue request that is refused: a revoked key, an unknown role, a name that is taken. */
export class IssueError extends FabricError {
  constructor(code: "FABRIC_ERR_KEY_REVOKED" | "FABRIC_ERR_UNKNOWN_ROLE" | "FABRIC_ERR_UNKNOWN_ACCOUNT" | "FABRIC_ERR_ISSUE", message: string, options: FabricErrorOptions = {}) {
    super(code, message, options);
  }
}

/** Pushing an account JWT to the hub failed or was incomplete. */
export class PushError extends FabricError {
  constructor(message: string, options: FabricErrorOptions = {}) {
    super("FABRIC_ERR_PUSH", message, options);
  }
}

/** Provisioning or renewal through the identity service was refused. */
export class ProvisionError extends FabricError {
  constructor(
    code:
      | "FABRIC_ERR_TOKEN_INVALID"
      | "FABRIC_ERR_TOKEN_USED"
      | "FABRIC_ERR_TOKEN_EXPIRED"
      | "FABRIC_ERR_NONCE_INVALID"
      | "FABRIC_ERR_NONCE_USED"
      | "FABRIC_ERR_PROOF_INVALID"
      | "FABRIC_ERR_CREDENTIAL_REVOKED"
      | "FABRIC_ERR_PERMISSION_DENIED"
      | "FABRIC_ERR_ALREADY_PROVISIONED"
      | "FABRIC_ERR_UNAVAILABLE"
      | "FABRIC_ERR_INTERNAL"
      | "FABRIC_ERR_PROVISION",
    message: string,
    options: FabricErrorOptions = {},
  ) {
    super(code, message, options);
  }
}
