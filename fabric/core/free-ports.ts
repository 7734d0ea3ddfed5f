import { createServer, type Server } from "node:net";

/**
 * Asks the OS for `count` free TCP ports on `host` (by listening on port 0 and closing). Only for what
 * must be known before any server starts: the route ports of a cluster whose nodes name each other (a
 * JetStream cluster refuses to start without routes). Every other port is picked by nats-server itself.
 */
export async function pickFreePorts(count: number, host = "127.0.0.1"): Promise<number[]> {
  const servers: Server[] = [];
  try {
    const ports: number[] = [];
    for (let i = 0; i < count; i++) {
      const srv = createServer();
      servers.push(srv);
      await new Promise<void>((resolve, reject) => {
        srv.once("error", reject);
        srv.listen(0, host, () => resolve());
      });
      const addr = srv.address();
      if (addr === null || typeof addr === "string") throw new Error("no port assigned");
      ports.push(addr.port);
    }
    return ports;
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }
}
