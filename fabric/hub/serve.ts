import { z } from "zod";
import { ConfigError, parseInput, type Logger } from "../core/index.js";
import { Keystore, upgradeKeystore } from "../../identity/index.js";
import { hubOptionsSchema } from "./up.js";
import { lockDataDir, serviceSettings, startHubServices, type RunningHubServices } from "./services.js";

export const serveOptionsSchema = z.strictObject({
  /** Where the services keep their own credentials. */
  dataDir: z.string().min(1),
  /** The keystore the servers' configs were made from (`fabric config hub`). */
  keystoreDir: z.string().min(1),
  servers: z.array(z.string().regex(/^(nats|tls):\/\/[^\s/]+$/, "a server is nats://host:port or tls://host:port")).min(1, "give at least one server"),
  /** Replicas of the hub's streams: the cluster's size up to 3 (5 on a cluster of 5 or more). */
  replicas: z.number().refine((n) => n === 1 || n === 3 || n === 5, "replicas are 1, 3 or 5"),
  host: z.string().min(1),
  identityService: z.boolean().default(true),
  windows: z.boolean().default(true),
  sinks: z.boolean().default(true),
  mqtt: hubOptionsSchema.shape.mqtt,
  grpc: hubOptionsSchema.shape.grpc,
  statusPage: hubOptionsSchema.shape.statusPage,
  exchange: hubOptionsSchema.shape.exchange,
  /** The servers are region `region` (`fabric config hub --region`): its links are applied from the data directory. */
  region: z.string().optional(),
});
export type ServeOptions = z.input<typeof serveOptionsSchema>;

/**
 * `fabric serve`: the hub's services (identity service, sites, window workers, MQTT ingress, gRPC gateway)
 * against servers started elsewhere, such as a multi-host cluster configured by `fabric config hub`.
 */
export async function serveHub(input: ServeOptions, logger: Logger): Promise<RunningHubServices> {
  const o = parseInput(serveOptionsSchema, input, "serve options");
  const log = logger.child({ component: "hub" });
  if (!Keystore.exists(o.keystoreDir)) throw new ConfigError(`no keystore at ${o.keystoreDir}: fabric serve runs with the keystore the servers' configs were made from (--store)`);
  const release = await lockDataDir(o.dataDir, "fabric serve");
  try {
    const ks = Keystore.open(o.keystoreDir);
    const region = o.region;
    if (region !== undefined && ks.storeFile().region?.name !== region) {
      throw new ConfigError(`keystore ${o.keystoreDir} does not serve region ${region}: make the servers' configs with \`fabric config hub --region ${region}\` from it`);
    }
    const upgraded = await ks.withLock(() => upgradeKeystore(ks));
    if (upgraded.length > 0) log.info({ accounts: upgraded }, "keystore upgraded with new built-in roles");
    const running = await startHubServices(
      {
        keystore: ks,
        keystoreCreated: false,
        dataDir: o.dataDir,
        urls: o.servers,
        replicas: o.replicas,
        ...serviceSettings(o),
        ...(region === undefined ? {} : { region: { name: region } }),
      },
      log,
    );
    log.info({ urls: o.servers, streams: running.streams }, "hub services ready");
    return {
      ...running,
      stop: async () => {
        await running.stop();
        release();
      },
    };
  } catch (err) {
    release();
    throw err;
  }
}
