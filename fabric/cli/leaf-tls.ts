import type { Command } from "commander";
import { InvalidInputError } from "../core/index.js";
import type { LeafTls } from "../hub/config.js";

export interface LeafTlsFlags {
  leafTlsCert?: string;
  leafTlsKey?: string;
  leafTlsCa?: string;
}

/** `--leaf-tls-cert/-key/-ca`: TLS (and mTLS) on the hub's leaf node listener, which sites dial over the WAN. */
export function addLeafTlsOptions(cmd: Command, where: string): Command {
  return cmd
    .option("--leaf-tls-cert <file>", `PEM certificate chain for the leaf node listener (sites dial it over TLS)${where}`)
    .option("--leaf-tls-key <file>", `PEM private key for the leaf node listener${where}`)
    .option("--leaf-tls-ca <file>", `PEM CA whose client certificates sites must show (mTLS)${where}`);
}

/** The leaf TLS setting the flags ask for, each path passed through `path`; refuses a half-given pair. */
export function leafTlsFromFlags(flags: LeafTlsFlags, path: (file: string) => string): { leafTls?: LeafTls } {
  if ((flags.leafTlsCert === undefined) !== (flags.leafTlsKey === undefined)) throw new InvalidInputError("--leaf-tls-cert and --leaf-tls-key go together");
  if (flags.leafTlsCa !== undefined && flags.leafTlsCert === undefined) throw new InvalidInputError("--leaf-tls-ca (mTLS) needs --leaf-tls-cert and --leaf-tls-key");
  if (flags.leafTlsCert === undefined || flags.leafTlsKey === undefined) return {};
  return { leafTls: { cert: path(flags.leafTlsCert), key: path(flags.leafTlsKey), ...(flags.leafTlsCa === undefined ? {} : { ca: path(flags.leafTlsCa) }) } };
}
