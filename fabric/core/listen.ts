import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "./logger.js";

/**
 * Listens on `port`; when it is a default the operator did not ask for (`orAnyPort`) and another process holds
 * it (a second fabric process on the machine), on a port the system picks instead, and says so. Returns the port.
 */
export async function listenOrAnyPort(server: Server, o: { host: string; port: number; orAnyPort: boolean; what: string; flag: string; logger: Logger }): Promise<number> {
  const listen = (port: number): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, o.host, () => {
        server.off("error", reject);
        resolve();
      });
    });
  try {
    await listen(o.port);
  } catch (err) {
    if (!o.orAnyPort || (err as NodeJS.ErrnoException).code !== "EADDRINUSE") throw err;
    o.logger.warn({ port: o.port }, `the default ${o.what} port is taken: serving it on a port the system picks (see ${o.flag})`);
    await listen(0);
  }
  return (server.address() as AddressInfo).port;
}
