import type { JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "../fabric/core/index.js";
import { peekJwt } from "../identity/index.js";
import { startIngress, type Ingress } from "../ingress/index.js";
import { ensureKvBuckets, ensureRetainedStream, MQTT_INSTANCES_BUCKET, MQTT_SESSIONS_BUCKET, MQTT_WILLS_BUCKET } from "../streams/index.js";
import { EdgeError } from "./errors.js";
import type { KeptTrust, SiteCredentials } from "./trust.js";

export interface SiteIngressOptions {
  /** The agent's connection (to make the ingress's stores). */
  nc: NatsConnection;
  jsm: JetStreamManager;
  /** The site's server. */
  url: string;
  host: string;
  port: number;
  creds: SiteCredentials;
  trust: KeptTrust;
  logger: Logger;
}

/**
 * The site's own MQTT ingress, bound to the site's server: legacy devices publish into the site's streams (a
 * PUBACK means stored at the site), and it checks their credentials against the account JWTs the site's server
 * holds, so a revocation the agent applies reaches MQTT devices too.
 */
export async function startSiteIngress(o: SiteIngressOptions): Promise<Ingress> {
  if (o.creds.ingress === undefined || o.creds.watcher === undefined) {
    throw new EdgeError("FABRIC_ERR_EDGE_STATE", "the site's MQTT ingress has no credentials yet: start it once with the hub reachable");
  }
  await ensureRetainedStream(o.jsm, 1);
  await ensureKvBuckets(o.nc, o.jsm, [MQTT_SESSIONS_BUCKET, MQTT_WILLS_BUCKET, MQTT_INSTANCES_BUCKET], 1);
  const operator = peekJwt(o.trust.operatorJwt)["sub"];
  if (typeof operator !== "string") throw new EdgeError("FABRIC_ERR_EDGE_STATE", "the kept operator JWT has no subject");
  return startIngress({
    config: { tcp: { host: o.host, port: o.port } },
    servers: [o.url],
    creds: o.creds.ingress,
    watcherCreds: o.creds.watcher,
    operatorKeys: [operator],
    accountKey: o.trust.account,
    logger: o.logger,
  });
}
