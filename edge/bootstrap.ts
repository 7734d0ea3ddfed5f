import { rmSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { connectNats, ensurePrivateDir, errorMessage, isFabricError, spawnNatsServer, writeFileAtomic, type Logger } from "../fabric/core/index.js";
import { requestSiteTrust, type SiteTrust } from "../identity/index.js";
import { EdgeError } from "./errors.js";
import type { EdgeOptions } from "./options.js";

const RETRY_MS = 250;

/** The site's agent talks to the hub with replies on the site's own inboxes (all the leaf link lets through). */
export const agentInboxPrefix = (site: string): string => `_INBOX.${site}.agent`;

/**
 * Fetches the site's trust before its real server starts (so no device connects with stale account JWTs): a
 * throwaway nats-server on loopback, without JetStream or operator mode, whose only leaf remote is the hub with
 * the site's leaf credential; the agent asks the identity service through it, then stops it.
 */
export async function fetchTrustBeforeStart(o: EdgeOptions, leafCreds: string, want: { agent: boolean; ingress: boolean }, timeoutMs: number, logger: Logger): Promise<SiteTrust> {
  const dir = join(o.dataDir, "bootstrap");
  rmSync(dir, { recursive: true, force: true });
  ensurePrivateDir(dir);
  const configFile = join(dir, "nats-server.conf");
  const tls = o.tls;
  const config = {
    server_name: `edge-${o.site}-bootstrap`,
    host: "127.0.0.1",
    port: -1,
    ports_file_dir: dir,
    leafnodes: {
      reconnect: "1s",
      remotes: [
        {
          urls: o.hub,
          credentials: o.creds,
          ...(tls === undefined ? {} : { tls: { ...(tls.ca === undefined ? {} : { ca_file: tls.ca }), ...(tls.cert === undefined ? {} : { cert_file: tls.cert, key_file: tls.key }) } }),
        },
      ],
    },
  };
  writeFileAtomic(configFile, `${JSON.stringify(config, null, 2)}\n`, 0o600);
  const server = await spawnNatsServer({ configFile, portsDir: dir, logFile: join(dir, "nats-server.log") });
  const deadline = Date.now() + timeoutMs;
  try {
    const nc = await connectNats({ servers: server.url, name: "fabric-edge bootstrap", inboxPrefix: agentInboxPrefix(o.site) });
    try {
      let last: unknown;
      while (Date.now() < deadline) {
        try {
          return await requestSiteTrust(nc, leafCreds, want);
        } catch (err) {
          // no responders / timeout until the leaf link is up; a refusal is final
          if (isFabricError(err)) throw err;
          last = err;
          await delay(RETRY_MS);
        }
      }
      throw new EdgeError("FABRIC_ERR_EDGE_HUB_UNREACHABLE", `the hub (${o.hub.join(", ")}) did not answer within ${timeoutMs} ms: ${errorMessage(last)}`);
    } finally {
      await nc.close();
    }
  } finally {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
    logger.debug("bootstrap server stopped");
  }
}
