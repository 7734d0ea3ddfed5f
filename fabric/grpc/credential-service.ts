import { NonceOperation, type CredentialServiceServer } from "../../proto/gen/fabric/v1/credential.js";
import { requestCredential, requestNonce, type NonceOperation as IdentityOperation } from "../../identity/index.js";
import { errorMessage, InvalidInputError, isFabricError, subjects } from "../core/index.js";
import type { GatewayContext } from "./context.js";
import { GatewayError } from "./errors.js";
import { publicUnary } from "./handlers.js";

const OPERATIONS: Readonly<Partial<Record<NonceOperation, IdentityOperation>>> = {
  [NonceOperation.NONCE_OPERATION_PROVISION]: "provision",
  [NonceOperation.NONCE_OPERATION_RENEW]: "renew",
  [NonceOperation.NONCE_OPERATION_EXCHANGE]: "exchange",
};

/** The identity service not answering is UNAVAILABLE (the caller may retry), not an internal error. */
async function forwarded<T>(p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (err) {
    if (isFabricError(err)) throw err;
    throw new GatewayError("FABRIC_ERR_UNAVAILABLE", `the identity service did not answer: ${errorMessage(err)}`);
  }
}

/**
 * CredentialService: the identity service's provisioning, renewal and token exchange, forwarded over NATS. These calls carry
 * no fabric credential (a device provisioning has none yet): the one-time token, the nonce and the key's
 * signature are the proof, checked by the identity service as for NATS clients.
 */
export function credentialService(ctx: GatewayContext): CredentialServiceServer {
  return {
    getNonce: publicUnary(ctx, async (req) => {
      const operation = OPERATIONS[req.operation];
      if (operation === undefined) throw new InvalidInputError("operation is required: NONCE_OPERATION_PROVISION, NONCE_OPERATION_RENEW or NONCE_OPERATION_EXCHANGE (a nonce is accepted for that operation only)");
      return { nonce: await forwarded(requestNonce(ctx.nc, operation)) };
    }),
    provision: publicUnary(ctx, async (req) => {
      const r = await forwarded(requestCredential(ctx.nc, subjects.identity.provision, { token: req.token, name: req.name, publicKey: req.publicKey, nonce: req.nonce, signature: req.signature }));
      return { jwt: r.jwt, expiresAt: r.expiresAt ?? 0 };
    }),
    exchange: publicUnary(ctx, async (req) => {
      const r = await forwarded(requestCredential(ctx.nc, subjects.identity.exchange, { token: req.token, publicKey: req.publicKey, nonce: req.nonce, signature: req.signature }));
      return { jwt: r.jwt, expiresAt: r.expiresAt ?? 0 };
    }),
    renew: publicUnary(ctx, async (req) => {
      const r = await forwarded(requestCredential(ctx.nc, subjects.identity.renew, { jwt: req.jwt, nonce: req.nonce, signature: req.signature }));
      return { jwt: r.jwt, expiresAt: r.expiresAt ?? 0 };
    }),
  };
}
