import { createConnection, createServer, type Server, type Socket } from "node:net";

/**
 * A TCP proxy the test controls, between a leaf and the hub: `cut()` closes every link with a FIN and refuses
 * new ones (the hub looks down); `cut({ silent: true })` black-holes them instead: nothing passes, nothing is
 * closed, as with a WAN that drops packets (the leaf must notice by itself). `restore()` lets links through
 * again (black-holed ones are reset first, as a real network's would be by then). `delayMs` (0 by default) holds
 * every chunk that long before passing it on, each way and in order: a WAN's one-way latency.
 */
export interface TcpProxy {
  port: number;
  /** Where links go; change it when the hub restarts on another port. */
  target: number;
  cut(options?: { silent?: boolean }): void;
  /** One-way delay added to every chunk, each direction (ms); may change while links are open. */
  delayMs: number;
  restore(): void;
  /** Links opened through the proxy so far. */
  links(): number;
  /** Bytes passed so far, each way (`up`: towards the target). */
  bytes(): { up: number; down: number };
  close(): Promise<void>;
}

type Mode = "open" | "refuse" | "blackhole";

export async function startTcpProxy(target: number, host = "127.0.0.1"): Promise<TcpProxy> {
  let mode: Mode = "open";
  let opened = 0;
  const counted = { up: 0, down: 0 };
  const pairs = new Set<{ a: Socket; b?: Socket }>();
  const state = { target, delayMs: 0 };

  /**
   * Passes what `from` reads to `to`, each chunk held state.delayMs, strictly in order: one queue and one timer per
   * direction (a timer per chunk is not enough: Node fires timers of different durations that fall due in the same
   * millisecond in no set order, and a TCP stream whose chunks swap is no longer the stream that was sent).
   */
  const forward = (from: Socket, to: Socket, count: (n: number) => void): void => {
    const queue: { due: number; data: Buffer | "end" }[] = [];
    let timer: NodeJS.Timeout | undefined;
    const pump = (): void => {
      timer = undefined;
      const now = Date.now();
      while (queue.length > 0 && (queue[0]?.due ?? 0) <= now) {
        const { data } = queue.shift() ?? { data: "end" as const };
        if (to.destroyed) continue;
        if (data === "end") to.end();
        else to.write(data);
      }
      const next = queue[0];
      if (next !== undefined) timer = setTimeout(pump, Math.max(0, next.due - now));
    };
    const enqueue = (data: Buffer | "end"): void => {
      if (state.delayMs <= 0 && queue.length === 0) {
        if (data === "end") to.end();
        else to.write(data);
        return;
      }
      // due times never decrease, so the queue is in due order
      const due = Math.max(Date.now() + state.delayMs, queue[queue.length - 1]?.due ?? 0);
      queue.push({ due, data });
      if (timer === undefined) timer = setTimeout(pump, Math.max(0, due - Date.now()));
    };
    from.on("data", (d: Buffer) => {
      count(d.length);
      enqueue(d);
    });
    from.on("end", () => enqueue("end"));
  };

  const server: Server = createServer((a) => {
    if (mode === "refuse") {
      a.destroy();
      return;
    }
    const pair: { a: Socket; b?: Socket } = { a };
    pairs.add(pair);
    a.on("error", () => undefined);
    a.on("close", () => {
      pair.b?.destroy();
      pairs.delete(pair);
    });
    if (mode === "blackhole") {
      a.pause();
      return;
    }
    opened++;
    const b = createConnection({ host, port: state.target });
    pair.b = b;
    b.on("error", () => a.destroy());
    b.on("close", () => a.destroy());
    forward(a, b, (n) => (counted.up += n));
    forward(b, a, (n) => (counted.down += n));
  });
  await new Promise<void>((ok) => server.listen(0, host, ok));
  const address = server.address();
  const port = typeof address === "object" && address !== null ? address.port : 0;

  return {
    port,
    get target() {
      return state.target;
    },
    set target(t: number) {
      state.target = t;
    },
    get delayMs() {
      return state.delayMs;
    },
    set delayMs(ms: number) {
      state.delayMs = ms;
    },
    cut: (options = {}) => {
      if (options.silent === true) {
        mode = "blackhole";
        for (const p of pairs) {
          // stop moving bytes both ways without closing anything
          p.a.pause();
          p.b?.pause();
        }
        return;
      }
      mode = "refuse";
      for (const p of pairs) {
        p.a.destroy();
        p.b?.destroy();
      }
    },
    restore: () => {
      for (const p of pairs) {
        p.a.destroy();
        p.b?.destroy();
      }
      mode = "open";
    },
    links: () => opened,
    bytes: () => ({ ...counted }),
    close: async () => {
      for (const p of pairs) {
        p.a.destroy();
        p.b?.destroy();
      }
      await new Promise<void>((ok) => server.close(() => ok()));
    },
  };
}
