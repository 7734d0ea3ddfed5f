import { CredentialError } from "./errors.js";

/** Formats a NATS `.creds` file (the format nsc and every NATS client read). It holds a seed: write 0600. */
export function formatCreds(jwt: string, seed: string): string {
  return `-----BEGIN NATS USER JWT-----
${jwt}
------END NATS USER JWT------

************************* IMPORTANT *************************
NKEY Seed printed below can be used to sign and prove identity.
NKEYs are sensitive and should be treated as secrets.

-----BEGIN USER NKEY SEED-----
${seed}
------END USER NKEY SEED------

*************************************************************
`;
}

const BLOCK = /-{3,}[^\n]*-{3,}\r?\n\s*([^\s-][^\n]*?)\s*\r?\n\s*-{3,}[^\n]*-{3,}/g;

/** Parses a `.creds` file into its JWT and seed; throws CredentialError MALFORMED naming what is missing. */
export function parseCreds(text: string): { jwt: string; seed: string } {
  const blocks = [...text.matchAll(BLOCK)].map((m) => m[1] ?? "");
  const jwt = blocks[0];
  const seed = blocks[1];
  if (jwt === undefined || jwt === "") throw new CredentialError("FABRIC_ERR_CREDENTIAL_MALFORMED", "creds file has no JWT block");
  if (seed === undefined || !seed.startsWith("S")) throw new CredentialError("FABRIC_ERR_CREDENTIAL_MALFORMED", "creds file has no seed block");
  return { jwt, seed };
}
