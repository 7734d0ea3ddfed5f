import { status, Metadata, type ServiceError } from "@grpc/grpc-js";
import { errorMessage, FabricError, isFabricError } from "../core/index.js";

/** A refusal by the gateway itself, with a stable code that the table below maps to a gRPC status. */
export class GatewayError extends FabricError {
  constructor(
    code:
      | "FABRIC_ERR_UNAUTHENTICATED"
      | "FABRIC_ERR_PERMISSION_DENIED"
      | "FABRIC_ERR_NOT_FOUND"
      | "FABRIC_ERR_STALE_TOKEN"
      | "FABRIC_ERR_FAILED_PRECONDITION"
      | "FABRIC_ERR_IDEMPOTENCY_CONFLICT"
      | "FABRIC_ERR_UNAVAILABLE",
    message: string,
  ) {
    super(code, message);
  }
}

/** The one table from fabric error codes to gRPC status codes; anything else is INTERNAL. */
const STATUS_OF: Readonly<Record<string, status>> = {
  FABRIC_ERR_UNAUTHENTICATED: status.UNAUTHENTICATED,
  FABRIC_ERR_CREDENTIAL_MALFORMED: status.UNAUTHENTICATED,
  FABRIC_ERR_CREDENTIAL_SIGNATURE: status.UNAUTHENTICATED,
  FABRIC_ERR_CREDENTIAL_EXPIRED: status.UNAUTHENTICATED,
  FABRIC_ERR_CREDENTIAL_NOT_YET_VALID: status.UNAUTHENTICATED,
  FABRIC_ERR_CREDENTIAL_REVOKED: status.UNAUTHENTICATED,
  FABRIC_ERR_CREDENTIAL_UNTRUSTED_ISSUER: status.UNAUTHENTICATED,
  FABRIC_ERR_CREDENTIAL_WRONG_ACCOUNT: status.UNAUTHENTICATED,
  FABRIC_ERR_CREDENTIAL_PROOF: status.UNAUTHENTICATED,
  FABRIC_ERR_PERMISSION_DENIED: status.PERMISSION_DENIED,
  FABRIC_ERR_INVALID_INPUT: status.INVALID_ARGUMENT,
  FABRIC_ERR_NOT_FOUND: status.NOT_FOUND,
  FABRIC_ERR_NO_STREAM: status.NOT_FOUND,
  FABRIC_ERR_STALE_TOKEN: status.FAILED_PRECONDITION,
  FABRIC_ERR_FAILED_PRECONDITION: status.FAILED_PRECONDITION,
  FABRIC_ERR_UNAVAILABLE: status.UNAVAILABLE,
  FABRIC_ERR_STORE_TIMEOUT: status.UNAVAILABLE,
  FABRIC_ERR_TIMEOUT: status.DEADLINE_EXCEEDED,
  FABRIC_ERR_STORE: status.ABORTED,
  FABRIC_ERR_PROVISION: status.INVALID_ARGUMENT,
  FABRIC_ERR_PROOF_INVALID: status.UNAUTHENTICATED,
  FABRIC_ERR_NONCE_INVALID: status.FAILED_PRECONDITION,
  FABRIC_ERR_KEY_REVOKED: status.PERMISSION_DENIED,
  FABRIC_ERR_NONCE_USED: status.FAILED_PRECONDITION,
  FABRIC_ERR_IDEMPOTENCY_CONFLICT: status.FAILED_PRECONDITION,
  FABRIC_ERR_ALREADY_PROVISIONED: status.ALREADY_EXISTS,
  FABRIC_ERR_TOKEN_USED: status.ALREADY_EXISTS,
  FABRIC_ERR_TOKEN_INVALID: status.PERMISSION_DENIED,
  FABRIC_ERR_TOKEN_EXPIRED: status.PERMISSION_DENIED,
  FABRIC_ERR_EXTERNAL_TOKEN_INVALID: status.UNAUTHENTICATED,
  FABRIC_ERR_EXTERNAL_TOKEN_EXPIRED: status.UNAUTHENTICATED,
  FABRIC_ERR_EXTERNAL_UNKNOWN_ISSUER: status.UNAUTHENTICATED,
  FABRIC_ERR_EXTERNAL_REVOKED: status.UNAUTHENTICATED,
  FABRIC_ERR_EXTERNAL_NO_ROLE: status.PERMISSION_DENIED,
  FABRIC_ERR_EXTERNAL_JWKS_UNAVAILABLE: status.UNAVAILABLE,
  FABRIC_ERR_EXTERNAL_CONFIG: status.FAILED_PRECONDITION,
};

function codeOf(err: unknown): string | undefined {
  return isFabricError(err) ? err.code : undefined;
}

/** The trailer every refusal carries its fabric code in. */
export const ERROR_CODE_TRAILER = "fabric-error-code";
/** The code of anything that is not a FabricError: a fault of the gateway, never the caller's input. */
export const INTERNAL_ERROR_CODE = "FABRIC_ERR_INTERNAL";

/**
 * Any error as a gRPC ServiceError: status from the table, the fabric code in the `fabric-error-code` trailer
 * (always: FABRIC_ERR_INTERNAL for what is not a FabricError).
 */
export function toServiceError(err: unknown): Partial<ServiceError> & { code: status; details: string } {
  const code = codeOf(err) ?? INTERNAL_ERROR_CODE;
  const metadata = new Metadata();
  metadata.set(ERROR_CODE_TRAILER, code);
  const grpcCode = STATUS_OF[code] ?? status.INTERNAL;
  return { code: grpcCode, details: code === INTERNAL_ERROR_CODE ? `internal error: ${errorMessage(err)}` : errorMessage(err), metadata };
}
