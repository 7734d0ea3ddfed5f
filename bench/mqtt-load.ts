import { connect, type Socket } from "node:net";
import { generate, parser as mqttParser, type Packet } from "mqtt-packet";

/**
 * The MQTT load generator of the benchmarks: raw sockets and mqtt-packet, one window of unacknowledged
 * publishes per connection, the same for every broker measured (and for the sink that measures its own
 * ceiling).
 */
export interface LoadOptions {
  port: number;
  connections: number;
  qos: 0 | 1 | 2;
  durationMs: number;
  /** Unacknowledged publishes per connection. */
  window: number;
  payload: (i: number) => Buffer;
  topic: (conn: number) => string;
  credentials?: (conn: number) => { username: string; password: string };
}

export interface LoadResult {
  sent: number;
  acked: number;
  elapsedMs: number;
  rate: number;
  latenciesMs: number[];
}

interface Client {
  socket: Socket;
  corked?: boolean;
  inflight: Map<number, number>;
  nextPid: number;
}

function openClient(o: LoadOptions, n: number, onPacket: (c: Client, p: Packet) => void): Promise<Client> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port: o.port, host: "127.0.0.1", noDelay: true });
    const client: Client = { socket, inflight: new Map(), nextPid: 1 };
    const parser = mqttParser({ protocolVersion: 4 });
    let connected = false;
    parser.on("packet", (p: Packet) => {
      if (!connected) {
        if (p.cmd === "connack" && (p.returnCode ?? 0) === 0) {
          connected = true;
          resolve(client);
        } else reject(new Error(`connect refused: ${JSON.stringify(p)}`));
        return;
      }
      onPacket(client, p);
    });
    socket.on("data", (d: Buffer) => parser.parse(d));
    socket.on("error", reject);
    const cred = o.credentials?.(n);
    socket.write(generate({ cmd: "connect", protocolVersion: 4, clientId: `load-${n}-${process.pid}`, clean: true, keepalive: 60, ...(cred === undefined ? {} : { username: cred.username, password: Buffer.from(cred.password) }) }));
  });
}

/** Opens connections and keeps them idle (for the memory-per-connection figure). */
export async function openIdle(o: Pick<LoadOptions, "port" | "credentials">, count: number, batch = 200): Promise<Socket[]> {
  const sockets: Socket[] = [];
  const opts = { ...o, connections: count, qos: 0 as const, durationMs: 0, window: 1, payload: () => Buffer.alloc(0), topic: () => "" };
  for (let i = 0; i < count; i += batch) {
    const clients = await Promise.all(Array.from({ length: Math.min(batch, count - i) }, (_, j) => openClient(opts, i + j, () => undefined)));
    sockets.push(...clients.map((c) => c.socket));
  }
  return sockets;
}

/** Runs the load for `durationMs`, then waits for the outstanding acknowledgements. */
export async function runLoad(o: LoadOptions): Promise<LoadResult> {
  let sent = 0;
  let acked = 0;
  const latencies: number[] = [];
  let stopping = false;
  let idx = 0;
  /** Writes of one tick in one syscall, for every broker alike. */
  const write = (c: Client, bytes: Buffer): boolean => {
    if (c.corked !== true) {
      c.corked = true;
      c.socket.cork();
      process.nextTick(() => {
        c.corked = false;
        c.socket.uncork();
      });
    }
    return c.socket.write(bytes);
  };
  const send = (c: Client, conn: number): void => {
    if (stopping) return;
    const payload = o.payload(idx++);
    if (o.qos === 0) {
      sent++;
      const ok = write(c, generate({ cmd: "publish", topic: o.topic(conn), payload, qos: 0, retain: false, dup: false }));
      if (ok) setImmediate(() => send(c, conn));
      else c.socket.once("drain", () => send(c, conn));
      return;
    }
    let pid = c.nextPid;
    while (c.inflight.has(pid)) pid = (pid % 65_535) + 1;
    c.nextPid = (pid % 65_535) + 1;
    c.inflight.set(pid, performance.now());
    sent++;
    write(c, generate({ cmd: "publish", topic: o.topic(conn), payload, qos: o.qos, messageId: pid, retain: false, dup: false }));
  };
  const done = (c: Client, pid: number, conn: number): void => {
    const t = c.inflight.get(pid);
    if (t === undefined) return;
    c.inflight.delete(pid);
    acked++;
    latencies.push(performance.now() - t);
    send(c, conn);
  };
  const clients: Client[] = [];
  for (let n = 0; n < o.connections; n++) {
    const conn = n;
    clients.push(
      await openClient(o, n, (c, p) => {
        if (p.cmd === "puback" || p.cmd === "pubcomp") done(c, p.messageId ?? 0, conn);
        else if (p.cmd === "pubrec") write(c, generate({ cmd: "pubrel", messageId: p.messageId ?? 0 }));
      }),
    );
  }
  const start = performance.now();
  clients.forEach((c, n) => {
    for (let i = 0; i < (o.qos === 0 ? 1 : o.window); i++) send(c, n);
  });
  await new Promise((r) => setTimeout(r, o.durationMs));
  stopping = true;
  const deadline = Date.now() + 10_000;
  while (clients.some((c) => c.inflight.size > 0) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  const elapsedMs = performance.now() - start;
  for (const c of clients) {
    c.socket.write(generate({ cmd: "disconnect" }));
    c.socket.end();
  }
  const count = o.qos === 0 ? sent : acked;
  return { sent, acked: count, elapsedMs, rate: (count * 1000) / elapsedMs, latenciesMs: latencies };
}
