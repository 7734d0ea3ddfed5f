import type { CredentialServiceServer } from "../../proto/gen/fabric/v1/credential.js";
import { requestCredential, requestNonce } from "../../identity/index.js";
import { subjects } from "../core/index.js";
import type { GatewayContext } from "./context.js";
import { publicUnary } from "./handlers.js";

/**
 * CredentialService: the identity service's provisioning and renewal, forwarded over NATS. These calls carry
 * no fabric credential (a device provisioning has none yet): the one-time token, the nonce and the key's
 * signature are the proof, checked by the identity service as for NATS clients.
 */
export function credentialService(ctx: GatewayContext): CredentialServiceServer {
  return {
    getNonce: publicUnary(async () => ({ nonce: await requestNonce(ctx.nc) })),
    provision: publicUnary(async (req) => {
      const r = await requestCredential(ctx.nc, subjects.identity.provision, { token: req.token, name: req.name, publicKey: req.publicKey, nonce: req.nonce, signature: req.signature });
      return { jwt: r.jwt, expiresAt: r.expiresAt ?? 0 };
    }),
    renew: publicUnary(async (req) => {
      const r = await requestCredential(ctx.nc, subjects.identity.renew, { jwt: req.jwt, nonce: req.nonce, signature: req.signature });
      return { jwt: r.jwt, expiresAt: r.expiresAt ?? 0 };
    }),
  };
}
