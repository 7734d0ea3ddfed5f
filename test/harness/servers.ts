import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writeFileSync } from "node:fs";
import { pickFreePorts, spawnNatsServer, waitHealthy, type NatsServerProcess, type ServerPorts } from "../../fabric/core/index.js";

/** Disposables registered by a test file; `dispose()` in afterAll/afterEach stops and removes them all. */
export class Harness {
  private readonly cleanups: (() => Promise<void> | void)[] = [];

  /** A fresh temporary directory, removed on dispose. */
  tempDir(prefix = "fabric-test-"): string {
    const dir = mkdtempSync(join(tmpdir(), prefix));
    this.defer(() => rmSync(dir, { recursive: true, force: true }));
    return dir;
  }

  defer(fn: () => Promise<void> | void): void {
    this.cleanups.push(fn);
  }

  async dispose(): Promise<void> {
    for (const fn of this.cleanups.splice(0).reverse()) {
      try {
        await fn();
      } catch {
        // keep disposing the rest
      }
    }
  }

  /**
   * A real nats-server on ports it picks (`port: -1`), with monitoring, in its own temp dir. `config` is merged
   * over the defaults; JetStream is on unless `jetstream: false`.
   */
  async startServer(options: { config?: Record<string, unknown>; jetstream?: boolean; name?: string } = {}): Promise<TestServer> {
    const dir = this.tempDir("fabric-nats-");
    const server = new TestServer(dir, {
      server_name: options.name ?? "test",
      host: "127.0.0.1",
      port: -1,
      http_port: -1,
      ports_file_dir: dir,
      ...(options.jetstream === false ? {} : { jetstream: { store_dir: join(dir, "js") } }),
      ...options.config,
    });
    await server.start();
    this.defer(() => server.stop());
    return server;
  }

  /**
   * A real n-node cluster (JetStream on), every node routing to every other; client and monitoring ports are
   * the servers' picks, kept for restarts so a restarted node comes back where its clients expect it.
   */
  async startCluster(n = 3, options: { config?: (i: number) => Record<string, unknown> } = {}): Promise<TestServer[]> {
    const nodes: TestServer[] = [];
    // A JetStream cluster node refuses to start without routes: the route ports are known before any starts.
    const routePorts = await pickFreePorts(n);
    for (let i = 0; i < n; i++) {
      const dir = this.tempDir("fabric-cluster-");
      const routes = routePorts.filter((_, j) => j !== i).map((p) => `nats-route://127.0.0.1:${p}`);
      const node = new TestServer(dir, {
        server_name: `n${i + 1}`,
        host: "127.0.0.1",
        port: -1,
        http_port: -1,
        ports_file_dir: dir,
        jetstream: { store_dir: join(dir, "js") },
        cluster: { name: "test-cluster", host: "127.0.0.1", port: routePorts[i], routes },
        ...options.config?.(i),
      });
      for (let attempt = 1; ; attempt++) {
        try {
          await node.start(false);
          break;
        } catch (err) {
          // the route port picked up front was taken meanwhile: pick another
          if (attempt >= 5 || !/address already in use/.test(String(err))) throw err;
          const [port] = await pickFreePorts(1);
          node.setClusterPort(port ?? -1);
        }
      }
      this.defer(() => node.stop());
      nodes.push(node);
    }
    for (const node of nodes) node.pinPorts();
    await Promise.all(nodes.map((s) => waitHealthy(s.ports.monitoring)));
    return nodes;
  }
}

/** One nats-server process that a test can stop, kill and restart on the same ports. */
export class TestServer {
  readonly dir: string;
  private config: Record<string, unknown>;
  private proc: NatsServerProcess | undefined;
  private generation = 0;

  constructor(dir: string, config: Record<string, unknown>) {
    this.dir = dir;
    this.config = config;
  }

  get ports(): ServerPorts {
    if (this.proc === undefined) throw new Error("server not started");
    return this.proc.ports;
  }

  get url(): string {
    return `nats://127.0.0.1:${this.ports.client}`;
  }

  get process(): NatsServerProcess {
    if (this.proc === undefined) throw new Error("server not started");
    return this.proc;
  }

  /** Writes the config and starts the server; waits for /healthz unless told not to (a cluster node alone is not healthy). */
  async start(healthy = true): Promise<void> {
    const configFile = join(this.dir, `server-${this.generation++}.conf`);
    writeFileSync(configFile, JSON.stringify(this.config, null, 2));
    this.proc = await spawnNatsServer({ configFile, portsDir: this.dir, logFile: join(this.dir, "server.log") });
    if (healthy) await waitHealthy(this.proc.ports.monitoring);
  }

  setClusterPort(port: number): void {
    const cluster = this.config["cluster"] as Record<string, unknown> | undefined;
    if (cluster !== undefined) this.config = { ...this.config, cluster: { ...cluster, port } };
  }

  /** From now on restart on the ports this run picked. */
  pinPorts(): void {
    const p = this.ports;
    this.config = { ...this.config, port: p.client, http_port: p.monitoring };
  }

  async stop(): Promise<void> {
    await this.proc?.stop();
  }

  async kill(signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    await this.proc?.kill(signal);
  }

  /** Stops (if running) and starts again on the same ports with the same data. */
  async restart(): Promise<void> {
    if (this.proc?.isRunning() === true) await this.proc.stop();
    this.pinPorts();
    await this.start();
  }
}
