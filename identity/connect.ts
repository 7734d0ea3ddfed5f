import type { Authenticator, NatsConnection } from "@nats-io/transport-node";
import { connectNats, type FabricConnectOptions } from "../fabric/core/index.js";
import { parseCreds } from "./creds.js";
import { keyPairFromSeed } from "./nkeys.js";

/**
 * A nats.js authenticator for a `.creds` file that signs the server's nonce with node:crypto Ed25519.
 * nats.js' own signs with tweetnacl (~15 ms a connect on these machines: 100 devices connecting at once
 * would run into the server's 2 s authentication timeout). The creds are parsed once.
 */
export function credsAuthenticator(creds: string): Authenticator {
  const { jwt, seed } = parseCreds(creds);
  const kp = keyPairFromSeed(seed);
  return (nonce?: string) => ({
    jwt,
    nkey: kp.publicKey,
    sig: nonce === undefined ? "" : Buffer.from(kp.sign(Buffer.from(nonce, "utf8"))).toString("base64url"),
  });
}

/** Connects with a fabric credential (the content of a `.creds` file). */
export async function connectWithCreds(creds: string, options: Omit<FabricConnectOptions, "authenticator">): Promise<NatsConnection> {
  return connectNats({ ...options, authenticator: credsAuthenticator(creds) });
}
