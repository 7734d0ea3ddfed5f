import { hostname } from "node:os";
import { nuid, type NatsConnection } from "@nats-io/transport-node";
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import { z } from "zod";
import { errorMessage, type Logger } from "../fabric/core/index.js";
import { LEASES_BUCKET } from "./definitions.js";
import type { WindowDefinition } from "./definition.js";
import { kvKeys } from "./kv-keys.js";
import { fnv1a32 } from "./partition.js";
import { DEFAULT_CHECKPOINT_EVERY_MS, WindowRunner } from "./worker.js";

/** How often a member refreshes its membership and leases, and rebalances (the bucket's TTL is 4×). */
const REBALANCE_EVERY_MS = 1_000;

const memberSchema = z.object({ windows: z.array(z.string()), host: z.string(), pid: z.number() });

export interface WindowGroupOptions {
  connection: NatsConnection;
  logger: Logger;
  checkpointEveryMs?: number;
  /**
   * Static membership (as Kafka's group.instance.id): a member restarted with the same id takes its leases back
   * at once instead of after their TTL. Never run two members with the same id at the same time.
   */
  memberId?: string;
}

/**
 * A window worker process's membership in the group that shares the windows. Every member refreshes
 * `m.<id>` (the windows it runs) in the leases bucket each second; entries expire by age, so a dead member
 * drops out within the bucket's TTL. For each window, the live members running it split its partitions
 * deterministically (sorted member ids, round robin from a per-window offset), so every member computes the
 * same assignment. A partition is owned through its lease `p.<window>.<partition>`, created with
 * compare-and-set and renewed with compare-and-set every second: a member gives up a partition assigned
 * elsewhere by checkpointing it and deleting the lease; the assigned member takes it once the lease is gone
 * (deleted, or expired because its owner died) and fences the previous owner through the checkpoint. So a key
 * is never processed by two workers at once, and a dead worker's partitions move within seconds.
 */
export class WindowGroup {
  readonly id: string;
  private readonly log: Logger;
  private readonly runners = new Map<string, { json: string; runner: WindowRunner }>();
  /** Leases we hold: key → revision. Only touched inside `leaseOp`. */
  private readonly leases = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  /** Ownership changes (may wait on the runners: checkpoints, reader restarts). */
  private loop: Promise<void> = Promise.resolve();
  /** Lease and membership writes: quick, never behind a runner, so a busy member never lets its leases lapse. */
  private leaseChain: Promise<void> = Promise.resolve();
  private rebalanceQueued = false;
  private stopped = false;

  private constructor(
    private readonly options: WindowGroupOptions,
    private readonly kv: KV,
    private readonly jsm: JetStreamManager,
  ) {
    this.id = options.memberId ?? nuid.next();
    this.log = options.logger.child({ component: "windows", member: this.id });
  }

  static async join(options: WindowGroupOptions): Promise<WindowGroup> {
    const g = new WindowGroup(options, await new Kvm(options.connection).open(LEASES_BUCKET), await jetstreamManager(options.connection));
    await g.leaseOp(() => g.heartbeat());
    g.timer = setInterval(() => {
      void g.leaseOp(() => g.heartbeat());
      if (g.rebalanceQueued) return;
      g.rebalanceQueued = true;
      void g.step(async () => {
        g.rebalanceQueued = false;
        await g.rebalance();
      });
    }, REBALANCE_EVERY_MS);
    return g;
  }

  /** The definitions this member runs: new ones start, changed ones restart, missing ones stop. */
  setDefinitions(defs: readonly WindowDefinition[]): Promise<void> {
    return this.step(async () => {
      const wanted = new Map(defs.map((d) => [d.name, d]));
      for (const [name, r] of this.runners) {
        const d = wanted.get(name);
        if (d === undefined || JSON.stringify(d) !== r.json) await this.stopRunner(name);
      }
      for (const d of defs) {
        if (this.runners.has(d.name)) continue;
        const runner = await WindowRunner.create(this.options.connection, d, this.options.logger, this.options.checkpointEveryMs ?? DEFAULT_CHECKPOINT_EVERY_MS, (i) => {
          void this.leaseOp(() => this.dropLease(d.name, i));
        });
        this.runners.set(d.name, { json: JSON.stringify(d), runner });
      }
      await this.leaseOp(() => this.heartbeat());
      await this.rebalance();
    });
  }

  runner(name: string): WindowRunner | undefined {
    return this.runners.get(name)?.runner;
  }

  /** Checkpoints and releases every partition, and leaves the group. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.step(async () => {
      this.stopped = true;
      for (const name of [...this.runners.keys()]) await this.stopRunner(name);
      await this.leaseOp(() => this.kv.delete(`m.${this.id}`).catch(() => undefined));
    });
  }

  private step(f: () => Promise<void>): Promise<void> {
    const next = this.loop.then(() => (this.stopped ? undefined : f()));
    this.loop = next.catch((err: unknown) => this.log.warn({ err: errorMessage(err) }, "window group step failed"));
    return next;
  }

  private leaseOp<T>(f: () => Promise<T>): Promise<T> {
    const next = this.leaseChain.then(f);
    this.leaseChain = next.then(
      () => undefined,
      (err: unknown) => this.log.warn({ err: errorMessage(err) }, "window lease write failed"),
    );
    return next;
  }

  /** Refreshes our membership and every lease we hold; a lease that cannot be renewed is lost. */
  private async heartbeat(): Promise<void> {
    if (this.stopped) return;
    await this.kv.put(`m.${this.id}`, JSON.stringify({ windows: [...this.runners.keys()].sort(), host: hostname(), pid: process.pid }));
    for (const [key, rev] of [...this.leases]) {
      try {
        this.leases.set(key, await this.kv.update(key, this.id, rev));
      } catch {
        // it expired or was taken (we stalled past the TTL): the partition is someone else's now
        this.leases.delete(key);
        const [, window = "", index = ""] = key.split(".");
        this.log.warn({ window, partition: Number(index) }, "partition lease lost");
        void this.runners.get(window)?.runner.release(Number(index)).catch(() => undefined);
      }
    }
  }

  private async stopRunner(name: string): Promise<void> {
    const r = this.runners.get(name);
    if (r === undefined) return;
    this.runners.delete(name);
    const owned = r.runner.owned();
    await r.runner.stop();
    for (const i of owned) await this.leaseOp(() => this.dropLease(name, i));
  }

  /** Lets a lease go (after its partition was checkpointed, or lost to a fence). */
  private async dropLease(window: string, index: number): Promise<void> {
    const key = `p.${window}.${index}`;
    const rev = this.leases.get(key);
    this.leases.delete(key);
    if (rev !== undefined) await this.kv.delete(key, { previousSeq: rev }).catch(() => undefined);
  }

  /** Takes a free lease (or, with static membership, our own from before a restart). */
  private async takeLease(key: string): Promise<boolean> {
    try {
      this.leases.set(key, await this.kv.create(key, this.id));
      return true;
    } catch {
      const held = await this.kv.get(key);
      if (held?.operation !== "PUT" || held.string() !== this.id) return false;
      try {
        this.leases.set(key, await this.kv.update(key, this.id, held.revision));
        return true;
      } catch {
        return false;
      }
    }
  }

  /** Live members and the windows each runs. */
  private async members(): Promise<Map<string, string[]>> {
    const out = new Map<string, string[]>();
    for (const k of await kvKeys(this.jsm, LEASES_BUCKET, "m.>")) {
      const e = await this.kv.get(k);
      if (e === null || e.operation !== "PUT") continue;
      const parsed = memberSchema.safeParse(e.json());
      if (parsed.success) out.set(k.slice(2), parsed.data.windows);
    }
    return out;
  }

  private async rebalance(): Promise<void> {
    const members = await this.members();
      for (const [name, { runner }] of this.runners) {
        const live = [...members].filter(([, ws]) => ws.includes(name)).map(([id]) => id);
        if (!live.includes(this.id)) live.push(this.id);
        live.sort();
        const offset = fnv1a32(Buffer.from(name)) % live.length;
        const owned = new Set(runner.owned());
        const taken: number[] = [];
        for (let i = 0; i < runner.def.partitions; i++) {
          const mine = live[(i + offset) % live.length] === this.id;
          if (owned.has(i) && !mine) {
            // hand it over: checkpoint, then let the lease go so the assigned member takes it
            await runner.release(i);
            await this.leaseOp(() => this.dropLease(name, i));
          } else if (!owned.has(i) && mine && !this.leases.has(`p.${name}.${i}`)) {
            if (await this.leaseOp(() => this.takeLease(`p.${name}.${i}`))) taken.push(i);
          }
        }
        if (taken.length > 0) {
          const failed = await runner.own(taken);
          for (const i of failed) await this.leaseOp(() => this.dropLease(name, i));
        }
      }
  }
}

export interface WindowWorkerOptions extends WindowGroupOptions {
  definition: WindowDefinition;
}

export interface WindowWorker {
  /** The last source sequence every partition this worker owns includes. */
  position(): number;
  /** The partitions it owns now. */
  partitions(): number[];
  /** Checkpoints, hands its partitions back and stops (a crash is simply not calling it). */
  stop(): Promise<void>;
}

/** A worker of one definition, a member of the group that shares it. */
export async function startWindowWorker(options: WindowWorkerOptions): Promise<WindowWorker> {
  const group = await WindowGroup.join(options);
  await group.setDefinitions([options.definition]);
  const runner = (): WindowRunner | undefined => group.runner(options.definition.name);
  return {
    position: () => runner()?.position() ?? 0,
    partitions: () => runner()?.owned() ?? [],
    stop: () => group.stop(),
  };
}
