import { join } from "node:path";
import { z } from "zod";
import { ensurePrivateDir, parseInput } from "../core/index.js";
import type { Keystore } from "../../identity/index.js";
import { DEFAULT_CLUSTER_NAME, hubServerConfig, writeServerConfig } from "./config.js";

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
});
export type ClusterConfigOptions = z.input<typeof clusterConfigOptionsSchema>;

/**
 * `fabric config hub`: one nats-server config per host of a multi-host hub cluster (operator mode, full
 * resolver preloaded with every account JWT, explicit routes to every peer), each checked with
 * `nats-server -t`. Returns the files written.
 */
export function writeClusterConfigs(ks: Keystore, outDir: string, input: ClusterConfigOptions): string[] {
  const o = parseInput(clusterConfigOptionsSchema, input, "cluster config");
  ensurePrivateDir(outDir);
  const preload: Record<string, string> = {};
  for (const acc of ks.accounts()) preload[acc.publicKey] = ks.accountJwt(acc.name);
  const files: string[] = [];
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
      cluster: {
        name: o.clusterName,
        port: o.clusterPort,
        routes: o.hosts.filter((_, j) => j !== i).map((h) => `nats-route://${h}:${o.clusterPort}`),
      },
    });
    const file = join(outDir, `${name}.conf`);
    writeServerConfig(file, { ...config, cluster: { ...(config["cluster"] as object), advertise: `${host}:${o.clusterPort}` }, client_advertise: `${host}:${o.clientPort}` });
    files.push(file);
  });
  return files;
}
