import { createConnection, createServer, type Server, type Socket } from "node:net";
import type { AddressInfo } from "node:net";

/**
 * A TCP relay on loopback in front of a target, counting the bytes the publishers send through it: the bytes on
 * the wire of every path alike (protocol framing, TLS-less here, compression included), whatever the client
 * library reports of itself.
 */
export interface CountingRelay {
  /** host:port to connect to instead of the target. */
  address: string;
  port: number;
  /** Bytes sent towards the target so far. */
  bytesUp(): number;
  close(): Promise<void>;
}

export async function startCountingRelay(targetHost: string, targetPort: number): Promise<CountingRelay> {
  let up = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((a) => {
    const b = createConnection({ host: targetHost, port: targetPort });
    for (const s of [a, b]) {
      sockets.add(s);
      s.on("error", () => undefined);
      s.on("close", () => {
        sockets.delete(s);
        a.destroy();
        b.destroy();
      });
    }
    a.on("data", (d: Buffer) => {
      up += d.length;
    });
    a.pipe(b);
    b.pipe(a);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    address: `127.0.0.1:${port}`,
    port,
    bytesUp: () => up,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** host and port of a URL (nats://, mqtt://) or of host:port. */
export function hostPort(target: string, defaultPort: number): { host: string; port: number } {
  const u = new URL(target.includes("://") ? target : `tcp://${target}`);
  return { host: u.hostname.replace(/^\[|\]$/g, ""), port: u.port === "" ? defaultPort : Number(u.port) };
}
