import { existsSync, rmSync } from "node:fs";
import { isAbsolute, join } from "node:path";
import { z } from "zod";
import { ensurePrivateDir, parseInput } from "../core/index.js";
import type { Keystore } from "../../identity/index.js";
import { DEFAULT_CLUSTER_NAME, hubServerConfig, leafTlsFiles, leafTlsSchema, writeServerConfig } from "./config.js";

const hostSchema = z.string().regex(/^[A-Za-z0-9.:[\]-]+$/, "a host is a name or an IP address");
export const clusterConfigOptionsSchema = z.strictObject({
  hosts: z.array(hostSchema).min(3, "a JetStream cluster needs at least 3 hosts").refine((h) => h.length % 2 === 1, "use an odd number of hosts"),
  clientPort: z.number().int().min(1).max(65_535),
  clusterPort: z.number().int().min(1).max(65_535),
  monitorPort: z.number().int().min(1).max(65_535),
  leafPort: z.number().int().min(1).max(65_535),
  /** Where each host keeps JetStream data and resolver JWTs. */
  dataDir: z.string().min(1),
  clusterName: z.string().regex(/^[A-Za-z0-9_-]+$/).default(DEFAULT_CLUSTER_NAME),
  /** TLS on every host's leaf listener: paths as they are on each host (the same on all of them). */
  leafTls: leafTlsSchema
    .refine((t) => leafTlsFiles(t).every((f) => isAbsolute(f)), "leaf TLS files are absolute paths, as they are on each host")
    .optional(),
});
export type ClusterConfigOptions = z.input<typeof clusterConfigOptionsSchema>;

export interface ClusterConfigs {
  files: string[];
  /** Leaf TLS files named by the configs that are not on this machine: `nats-server -t` ran without them. */
  uncheckedFiles: string[];
}

/**
 * `fabric config hub`: one nats-server config per host of a multi-host hub cluster (operator mode, full
 * resolver preloaded with every account JWT, explicit routes to every peer, optionally TLS on the leaf
 * listener), each checked with `nats-server -t`. The leaf TLS files are paths on the hosts: when they are not
 * on this machine too, the check runs on a copy without them and the answer names them.
 */
export function writeClusterConfigs(ks: Keystore, outDir: string, input: ClusterConfigOptions): ClusterConfigs {
  const o = parseInput(clusterConfigOptionsSchema, input, "cluster config");
  ensurePrivateDir(outDir);
  const preload: Record<string, string> = {};
  for (const acc of ks.accounts()) preload[acc.publicKey] = ks.accountJwt(acc.name);
  const files: string[] = [];
  const uncheckedFiles = o.leafTls === undefined ? [] : leafTlsFiles(o.leafTls).filter((f) => !existsSync(f));
  o.hosts.forEach((host, i) => {
    const name = `hub-${i + 1}`;
    const config = hubServerConfig({
      serverName: name,
      host: "0.0.0.0",
      clientPort: o.clientPort,
      monitorPort: o.monitorPort,
      leafPort: o.leafPort,
      storeDir: join(o.dataDir, "jetstream"),
      resolverDir: join(o.dataDir, "jwt"),
      operatorJwt: ks.operatorJwt(),
      systemAccount: ks.storeFile().systemAccount,
      preload,
      ...(o.leafTls === undefined ? {} : { leafTls: o.leafTls }),
      cluster: {
        name: o.clusterName,
        port: o.clusterPort,
        routes: o.hosts.filter((_, j) => j !== i).map((h) => `nats-route://${h}:${o.clusterPort}`),
      },
    });
    const file = join(outDir, `${name}.conf`);
    const hostConfig: Record<string, unknown> = { ...config, cluster: { ...(config["cluster"] as object), advertise: `${host}:${o.clusterPort}` }, client_advertise: `${host}:${o.clientPort}` };
    writeServerConfig(file, hostConfig, uncheckedFiles.length === 0);
    if (uncheckedFiles.length > 0) {
      const { tls: _hostOnly, ...leafnodes } = hostConfig["leafnodes"] as Record<string, unknown>;
      const probe = join(outDir, `.${name}.check.conf`);
      try {
        writeServerConfig(probe, { ...hostConfig, leafnodes });
      } finally {
        rmSync(probe, { force: true });
      }
    }
    files.push(file);
  });
  return { files, uncheckedFiles };
}
