import { readFileSync } from "node:fs";
import { z } from "zod";
import { parseInput, readJsonFile, type Logger } from "../core/index.js";
import { Keystore, parseCreds, peekJwt, SYSTEM_ACCOUNT_NAME } from "../../identity/index.js";
import { startIngress, type Ingress, type IngressOptions } from "../../ingress/index.js";
import { hubCreds } from "./hub-creds.js";

export const standaloneIngressSchema = z.strictObject({
  servers: z.array(z.string().min(1)).min(1, "give the hub's URL (--server)"),
  host: z.string().min(1),
  port: z.number().int().min(0).max(65_535),
  wsPort: z.number().int().min(0).max(65_535).optional(),
  /** An ingress options file (JSON): limits, TLS, legacy mappings. */
  configFile: z.string().optional(),
  /** Either a keystore and the hub's data dir (same machine as the hub)… */
  keystoreDir: z.string().optional(),
  dataDir: z.string().optional(),
  account: z.string().optional(),
  /** …or explicit credentials (a remote hub). */
  credsFile: z.string().optional(),
  watcherCredsFile: z.string().optional(),
  operatorKey: z.string().optional(),
});
export type StandaloneIngressOptions = z.input<typeof standaloneIngressSchema>;

/**
 * `fabric ingress`: an MQTT ingress process of its own, serving a running hub. Several instances may serve
 * one hub (sessions and retained messages live in JetStream). On the hub's machine it takes its credentials
 * from the keystore and the hub's data directory; elsewhere from --creds, --watcher-creds and --operator.
 */
export async function startStandaloneIngress(input: StandaloneIngressOptions, logger: Logger): Promise<Ingress> {
  const o = parseInput(standaloneIngressSchema, input, "ingress options");
  const fileConfig = o.configFile === undefined ? {} : (readJsonFile(o.configFile) as IngressOptions);
  let creds: string;
  let watcherCreds: string;
  let operatorKey: string;
  if (o.credsFile !== undefined || o.watcherCredsFile !== undefined) {
    if (o.credsFile === undefined || o.watcherCredsFile === undefined || o.operatorKey === undefined) {
      throw new Error("--creds, --watcher-creds and --operator go together");
    }
    creds = readFileSync(o.credsFile, "utf8");
    watcherCreds = readFileSync(o.watcherCredsFile, "utf8");
    operatorKey = o.operatorKey;
  } else {
    if (o.keystoreDir === undefined || o.dataDir === undefined) throw new Error("give --store and --data, or --creds, --watcher-creds and --operator");
    const ks = Keystore.open(o.keystoreDir);
    const account = o.account ?? ks.tenantAccounts()[0]?.name ?? "";
    creds = await hubCreds(ks, o.dataDir, account, logger, "ingress");
    watcherCreds = await hubCreds(ks, o.dataDir, SYSTEM_ACCOUNT_NAME, logger, "watcher");
    operatorKey = ks.storeFile().operator.publicKey;
  }
  const claims = peekJwt(parseCreds(creds).jwt) as { nats?: { issuer_account?: string }; iss?: string };
  const accountKey = claims.nats?.issuer_account ?? claims.iss ?? "";
  return startIngress({
    config: {
      ...fileConfig,
      tcp: { host: o.host, port: o.port },
      ...(o.wsPort === undefined ? {} : { ws: { host: o.host, port: o.wsPort } }),
    },
    servers: o.servers,
    creds,
    watcherCreds,
    operatorKeys: [operatorKey],
    accountKey,
    logger,
  });
}
