import { existsSync, rmSync } from "node:fs";
import { dirname, isAbsolute, join } from "node:path";
import { z } from "zod";
import { ConfigError, ensurePrivateDir, parseInput, writeSecretFile } from "../core/index.js";
import { issueLinkCreds, linkAccountName, setDialedLinks, setKeystoreRegion, type Keystore } from "../../identity/index.js";
import { linkCredsFile, putRegionLink, regionLinkSchema, regionLinksFile, type RegionLeafRemote } from "./regions/index.js";
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
  /** The cluster is this region (its JetStream domain); with `dials`, the peers it dials and their leaf URLs. */
  region: z
    .strictObject({
      name: z.string().min(1),
      dials: z.array(z.strictObject({ peer: z.string().min(1), urls: z.array(z.string().min(1)).min(1) })).default([]),
    })
    .optional(),
});
export type ClusterConfigOptions = z.input<typeof clusterConfigOptionsSchema>;

export interface ClusterConfigs {
  files: string[];
  /** With a region that dials: the link credentials (copy each to `<dataDir>/regions/` on every host) and the links file for `fabric serve`'s data directory. */
  regionFiles: string[];
  /** Leaf TLS files named by the configs that are not on this machine: `nats-server -t` ran without them. */
  uncheckedFiles: string[];
}

/**
 * `fabric config hub`: one nats-server config per host of a multi-host hub cluster (operator mode, full
 * resolver preloaded with every account JWT, explicit routes to every peer, optionally TLS on the leaf
 * listener), each checked with `nats-server -t`. The leaf TLS files are paths on the hosts: when they are not
 * on this machine too, the check runs on a copy without them and the answer names them.
 */
export async function writeClusterConfigs(ks: Keystore, outDir: string, input: ClusterConfigOptions): Promise<ClusterConfigs> {
  const o = parseInput(clusterConfigOptionsSchema, input, "cluster config");
  ensurePrivateDir(outDir);
  const region = o.region === undefined ? undefined : await regionConfig(ks, outDir, o.dataDir, o.region);
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
      ...(region === undefined ? {} : { domain: region.name, leafRemotes: region.remotes }),
      cluster: {
        name: o.clusterName,
        port: o.clusterPort,
        routes: o.hosts.filter((_, j) => j !== i).map((h) => `nats-route://${h}:${o.clusterPort}`),
      },
    });
    const file = join(outDir, `${name}.conf`);
    const hostConfig: Record<string, unknown> = { ...config, cluster: { ...(config["cluster"] as object), advertise: `${host}:${o.clusterPort}` }, client_advertise: `${host}:${o.clientPort}` };
    writeServerConfig(file, hostConfig, uncheckedFiles.length === 0 && region === undefined);
    if (uncheckedFiles.length > 0 || region !== undefined) {
      // checked with what this machine has: the link credentials from the output directory, TLS files left out when absent
      const { tls: hostTls, ...rest } = hostConfig["leafnodes"] as Record<string, unknown>;
      const leafnodes = {
        ...rest,
        ...(uncheckedFiles.length === 0 && hostTls !== undefined ? { tls: hostTls } : {}),
        ...(region === undefined ? {} : { remotes: region.remotes.map((r) => ({ urls: r.urls, account: r.account, credentials: region.localCreds[r.credentials] })) }),
      };
      const probe = join(outDir, `.${name}.check.conf`);
      try {
        writeServerConfig(probe, { ...hostConfig, leafnodes });
      } finally {
        rmSync(probe, { force: true });
      }
    }
    files.push(file);
  });
  return { files, uncheckedFiles, regionFiles: region?.files ?? [] };
}

/**
 * The keystore serves the region and dials its peers (link accounts made, the tenant JWT signed with their
 * imports); a link credential per peer in `<out>/regions/`, named in the configs as `<dataDir>/regions/<peer>.creds`
 * on the hosts; and `<out>/region-links.json` for `fabric serve --region` (its data directory).
 */
async function regionConfig(
  ks: Keystore,
  outDir: string,
  dataDir: string,
  region: { name: string; dials: { peer: string; urls: string[] }[] },
): Promise<{ name: string; remotes: RegionLeafRemote[]; localCreds: Record<string, string>; files: string[] }> {
  const tenant = ks.tenantAccounts()[0];
  if (tenant === undefined) throw new ConfigError(`keystore ${ks.dir} has no tenant account to link regions with`);
  const links = region.dials.map((d) => parseInput(regionLinkSchema, d, `link to ${d.peer}`));
  return ks.withLock(() => {
    setKeystoreRegion(ks, region.name, tenant.name);
    setDialedLinks(ks, links.map((l) => l.peer));
    const remotes: RegionLeafRemote[] = [];
    const localCreds: Record<string, string> = {};
    const files: string[] = [];
    for (const l of links) {
      const local = linkCredsFile(outDir, l.peer);
      ensurePrivateDir(dirname(local));
      writeSecretFile(local, issueLinkCreds(ks, l.peer).creds);
      const onHost = linkCredsFile(dataDir, l.peer);
      localCreds[onHost] = local;
      remotes.push({ urls: l.urls ?? [], account: ks.account(linkAccountName(l.peer)).publicKey, credentials: onHost });
      files.push(local);
    }
    if (links.length > 0) {
      for (const l of links) putRegionLink(outDir, l);
      files.push(regionLinksFile(outDir));
    }
    return { name: region.name, remotes, localCreds, files };
  });
}
