import cluster from "node:cluster";
import { say, untilSignal } from "../core/index.js";

export interface Running<P> {
  ports: P;
  stop(): Promise<void>;
}

/**
 * Runs a server in `count` worker processes sharing its listening sockets (node:cluster), so it uses more
 * than one core; the primary restarts a worker that dies and stops them all on SIGINT/SIGTERM. With one
 * worker it runs in this process. `ready` gets the ports once every worker listens.
 */
export async function runWorkers<P>(count: number, start: () => Promise<Running<P>>, ready: (ports: P) => void): Promise<void> {
  if (count <= 1) {
    const r = await start();
    ready(r.ports);
    await untilSignal(() => r.stop());
    return;
  }
  if (cluster.isWorker) {
    const r = await start();
    process.send?.({ fabricReady: true, ports: r.ports });
    await untilSignal(() => r.stop());
    process.exit(0);
  }
  let stopping = false;
  let readyCount = 0;
  let announced = false;
  const fork = (): void => {
    const w = cluster.fork();
    w.on("message", (m: { fabricReady?: boolean; ports?: P }) => {
      if (m.fabricReady !== true || m.ports === undefined) return;
      readyCount++;
      if (!announced && readyCount >= count) {
        announced = true;
        ready(m.ports);
      }
    });
    w.on("exit", (code, signal) => {
      if (stopping) return;
      say(`worker ${w.process.pid ?? "?"} exited (${signal ?? code ?? "?"}): starting another`);
      fork();
    });
  };
  for (let i = 0; i < count; i++) fork();
  await untilSignal(async () => {
    stopping = true;
    const workers = Object.values(cluster.workers ?? {}).filter((w) => w !== undefined);
    await Promise.all(
      workers.map(
        (w) =>
          new Promise<void>((resolve) => {
            w.once("exit", () => resolve());
            w.process.kill("SIGTERM");
          }),
      ),
    );
  });
}
