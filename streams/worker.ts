import { headers as natsHeaders, type NatsConnection } from "@nats-io/transport-node";
import type { JsMsg } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import { CONTENT_ENCODING_HEADER, endWhenSettled, messagePayload, errorMessage, isFabricError, JetStreamPublisher, messagingAttributes, SPAN, SpanKind, startChildSpan, TRACEPARENT, tracingEnabled, type AckSubject, type Logger } from "../fabric/core/index.js";
import { CheckpointStore, FencedError } from "./checkpoint-store.js";
import { CHECKPOINTS_BUCKET, LATEST_BUCKET, REJECT_REASON_HEADER } from "./definitions.js";
import type { WindowDefinition } from "./definition.js";
import { createOperator, restoreOperator, type Emission, type Operator, type OperatorState, type PartialWindow } from "./operator.js";
import { KeyTraces } from "./key-traces.js";
import { windowMetrics } from "./metrics.js";
import { partitionOf } from "./partition.js";
import { readSource, type SourceReader } from "./source-reader.js";

/** A checkpoint at least this often (and at every hand-over and stop). */
export const DEFAULT_CHECKPOINT_EVERY_MS = 5_000; // 5 s
/** Event times past this (year 10000) are absurd: rejected rather than opening windows nobody closes. */
const MAX_EVENT_TIME = 253_402_300_800_000;
/** Subjects whose key and partition are remembered (then the cache starts over). */
const ROUTE_CACHE_SIZE = 100_000;
/** Processing-time work (idle close, early firings) runs when the clock moved this far. */
const TICK_EVERY_MS = 1_000;

interface Partition {
  index: number;
  store: CheckpointStore;
  op: Operator;
  /** The last source sequence the state includes, and the processing time there. */
  seq: number;
  clock: number;
  /** Changed since its last checkpoint. */
  dirty: boolean;
  /** When its checkpoint was last written or claimed (performance.now()). */
  savedAt: number;
}

/**
 * The window worker of one definition in one process: the partitions this process owns (the group hands them
 * out), one source reader for all of them, results and checkpoints.
 *
 * Results go to AGGREGATES under message ids that depend only on the input (`<def>:<key>:<start>:<rev>`), so a
 * worker that resumes from a checkpoint re-emits what was emitted since and JetStream stores each result once.
 * The operator's processing time is the source messages' stored timestamps, so a replay sees the same clock; when
 * the source is idle the clock runs on from the last timestamp with local elapsed time, so a silent stream still
 * closes its windows. Each partition's checkpoint (state, position, clock) is taken after the outputs it
 * produced are stored, with compare-and-set: a fenced (zombie) owner loses the partition.
 */
export class WindowRunner {
  private readonly log: Logger;
  private readonly parts = new Map<number, Partition>();
  private readonly publisher: JetStreamPublisher;
  private reader: SourceReader | undefined;
  private pending: Promise<unknown>[] = [];
  private chain: Promise<void> = Promise.resolve();
  /** Processing time: the last stream timestamp, and the local time it was seen at. */
  private clock = 0;
  private clockAt = performance.now();
  private tickSecond = 0;
  private lastCheckpoint = performance.now();
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private checkpointQueued = false;
  private readonly routes = new Map<string, { key: string; partition: number }>();
  /** Source messages handled since the last scrape (windowMetrics adds them up). */
  private eventsIn = 0;
  private readonly unregisterMetrics: () => void;
  private readonly traces = new KeyTraces();

  private constructor(
    private readonly nc: NatsConnection,
    readonly def: WindowDefinition,
    logger: Logger,
    private readonly checkpoints: KV,
    private readonly checkpointEveryMs: number,
    /** Called when a partition is lost to a fence, so its lease is let go. */
    private readonly onLost: (index: number) => void,
  ) {
    this.log = logger.child({ window: def.name });
    this.publisher = new JetStreamPublisher(nc);
    this.timer = setInterval(() => this.idle(), TICK_EVERY_MS);
    this.timer.unref();
    this.unregisterMetrics = windowMetrics.register({
      window: def.name,
      takeEvents: () => {
        const n = this.eventsIn;
        this.eventsIn = 0;
        return n;
      },
      partitions: () => this.partitionFigures(),
    });
  }

  /** Each owned partition's lag behind the source (as of the last delivery) and checkpoint age. */
  private partitionFigures(): { partition: number; lagMessages: number; checkpointAgeSeconds: number }[] {
    const last = this.reader?.last();
    const head = last === undefined ? 0 : last.seq + last.pending;
    const now = performance.now();
    return [...this.parts.values()].map((p) => ({
      partition: p.index,
      lagMessages: last === undefined ? 0 : Math.max(0, head - Math.max(p.seq, last.seq)),
      checkpointAgeSeconds: (now - p.savedAt) / 1000,
    }));
  }

  static async create(nc: NatsConnection, def: WindowDefinition, logger: Logger, checkpointEveryMs: number, onLost: (index: number) => void): Promise<WindowRunner> {
    const kvm = new Kvm(nc);
    return new WindowRunner(nc, def, logger, await kvm.open(CHECKPOINTS_BUCKET), checkpointEveryMs, onLost);
  }

  owned(): number[] {
    return [...this.parts.keys()].sort((a, b) => a - b);
  }

  /** The last source sequence every owned partition includes (0 when none is owned). */
  position(): number {
    const last = this.reader?.last().seq ?? 0;
    let min = Infinity;
    for (const p of this.parts.values()) min = Math.min(min, Math.max(p.seq, last));
    return min === Infinity ? 0 : min;
  }

  /**
   * Takes partitions over from their checkpoints (fencing any previous owner) and reads on from the earliest
   * position among all owned partitions. Returns the ones that could not be taken.
   */
  own(indexes: number[]): Promise<number[]> {
    const failed: number[] = [];
    return this.serial(async () => {
      await this.closeReader();
      for (const index of indexes) {
        if (this.parts.has(index)) continue;
        try {
          const p = await this.load(index);
          this.log.info({ partition: index, seq: p.seq }, "partition owned");
        } catch (err) {
          this.log.warn({ partition: index, err: errorMessage(err) }, "partition not taken over");
          failed.push(index);
        }
      }
      await this.startReader();
    }).then(() => failed);
  }

  /** Checkpoints a partition and lets it go (a hand-over to another worker). */
  release(index: number): Promise<void> {
    return this.serial(async () => {
      const p = this.parts.get(index);
      if (p === undefined) return;
      await this.checkpointNow([p]);
      this.parts.delete(index);
      this.log.info({ partition: index }, "partition released");
      if (this.parts.size === 0) await this.closeReader();
    });
  }

  /** Checkpoints every partition and stops. */
  stop(): Promise<void> {
    clearInterval(this.timer);
    return this.serial(async () => {
      await this.closeReader();
      await this.checkpointNow([...this.parts.values()]);
      this.parts.clear();
      this.stopped = true;
      this.unregisterMetrics();
      this.publisher.close();
    });
  }

  private serial(f: () => Promise<void>): Promise<void> {
    const next = this.chain.then(f);
    this.chain = next.catch((err: unknown) => this.log.error({ err: errorMessage(err) }, "window worker step failed"));
    return next;
  }

  /** Every owned partition includes what the reader delivered so far. */
  private syncPositions(): void {
    const last = this.reader?.last().seq ?? 0;
    for (const p of this.parts.values()) {
      if (last < p.seq) continue;
      p.seq = last;
      p.clock = this.clock;
    }
  }

  /** Stops reading; every owned partition includes what was delivered until then. */
  private async closeReader(): Promise<void> {
    const r = this.reader;
    if (r === undefined) return;
    this.syncPositions();
    this.reader = undefined;
    await r.close();
  }

  /** Reads from the earliest position among the owned partitions (the reader must be closed). */
  private async startReader(): Promise<void> {
    if (this.parts.size === 0 || this.stopped) return;
    const first = [...this.parts.values()].reduce((a, b) => (b.seq < a.seq ? b : a));
    // the clock where the reader starts again, so the replay crosses the same seconds as the first run
    this.clock = first.clock;
    this.clockAt = performance.now();
    this.tickSecond = Math.floor(first.clock / TICK_EVERY_MS);
    const from = first.seq + 1;
    this.reader = await readSource(this.nc, { stream: this.def.source.stream, filter: this.def.source.filter, fromSeq: from, logger: this.log, onMessage: (m, d) => this.handle(m, d) });
  }

  private handle(m: JsMsg, d: AckSubject): void {
    this.eventsIn++;
    const seq = d.streamSeq;
    // processing time is the message's stored timestamp: a function of the position, so a replay sees it again
    this.clock = d.storedAtMs;
    this.clockAt = performance.now();
    const second = Math.floor(this.clock / TICK_EVERY_MS);
    if (second !== this.tickSecond) {
      this.tickSecond = second;
      this.tick(seq);
    }
    const route = this.route(m.subject);
    if (typeof route === "string") return this.reject(m, seq, route);
    const p = this.parts.get(route.partition);
    if (p !== undefined && seq > p.seq) {
      p.seq = seq;
      p.dirty = true;
      this.traces.note(route.key, m);
      const body = parseBody(m);
      if (this.def.source.partials) {
        this.addPartial(m, seq, p.op, route.key, body);
      } else {
        const value = body?.[this.def.valueField];
        const ts = body?.[this.def.eventTimeField];
        if (typeof value !== "number" || !Number.isFinite(value) || typeof ts !== "number" || !Number.isFinite(ts) || ts <= 0 || ts > MAX_EVENT_TIME) {
          this.reject(m, seq, `window ${this.def.name}: payload needs numeric ${this.def.valueField} and ${this.def.eventTimeField} (epoch ms, before year 10000)`);
        } else {
          for (const e of p.op.add(route.key, value, ts, this.clock)) this.emit(e, seq);
        }
      }
    }
    if (performance.now() - this.lastCheckpoint >= this.checkpointEveryMs) this.scheduleCheckpoint();
  }

  /** One checkpoint at a time: a slow store delays the next instead of queueing them up. */
  private scheduleCheckpoint(): void {
    if (this.checkpointQueued) return;
    this.checkpointQueued = true;
    void this.serial(async () => {
      this.checkpointQueued = false;
      await this.checkpointNow([...this.parts.values()]);
    });
  }

  /** The source is idle: processing time runs on from its last timestamp, so silent keys still close. */
  private idle(): void {
    if (this.reader === undefined || this.reader.last().pending > 0 || this.clock === 0) return;
    const at = performance.now();
    if (at - this.clockAt < TICK_EVERY_MS) return;
    this.clock += at - this.clockAt;
    this.clockAt = at;
    this.tick(Infinity);
    if (at - this.lastCheckpoint >= this.checkpointEveryMs) this.scheduleCheckpoint();
  }

  /**
   * Processing-time work, each time the clock enters a new second. Only partitions that are live at `seq` tick:
   * one replaying input its checkpoint already includes ticked there the first time. So ticks fall on the same
   * input positions in a replay as in the first run.
   */
  private tick(seq: number): void {
    for (const p of this.parts.values()) {
      if (seq <= p.seq) continue;
      const out = p.op.tick(this.clock);
      if (out.length > 0) p.dirty = true;
      for (const e of out) this.emit(e);
    }
  }

  /** A subject's key and partition (or why it has none), cached: subjects repeat, and this is per message. */
  private route(subject: string): { key: string; partition: number } | string {
    let r = this.routes.get(subject);
    if (r === undefined) {
      const tokens = subject.split(".");
      const keyTokens: string[] = [];
      for (const i of this.def.key) {
        const t = tokens[i];
        if (t === undefined) return `window ${this.def.name}: subject ${subject} has no token ${i} for the key`;
        keyTokens.push(t);
      }
      r = { key: keyTokens.join("."), partition: partitionOf(keyTokens, this.def.partitions) };
      if (this.routes.size >= ROUTE_CACHE_SIZE) this.routes.clear();
      this.routes.set(subject, r);
    }
    return r;
  }

  /** A partial result of another worker (an edge's): merged, or rejected with the reason. */
  private addPartial(m: JsMsg, seq: number, op: Operator, key: string, body: Record<string, unknown> | undefined): void {
    // a revision or an early result repeats its whole window: merging it too would count its readings twice
    if (body?.["kind"] !== undefined && body["kind"] !== "final") {
      this.reject(m, seq, `window ${this.def.name}: only final partials are merged (this one is ${JSON.stringify(body["kind"])})`);
      return;
    }
    let out: Emission[];
    try {
      out = op.addPartial(key, body as unknown as PartialWindow, this.clock);
    } catch (err) {
      if (!isFabricError(err)) throw err;
      this.reject(m, seq, `window ${this.def.name}: ${err.message}`);
      return;
    }
    for (const e of out) this.emit(e, seq);
  }

  private reject(m: JsMsg, seq: number, reason: string): void {
    windowMetrics.rejected(this.def.name);
    const h = natsHeaders();
    h.set(REJECT_REASON_HEADER, reason);
    this.track(this.publisher.publish(`rejected.${m.subject}`, m.data, { msgId: `rej:${this.def.name}:${seq}`, headers: h }));
  }

  /** Outputs are awaited at the next checkpoint; a failure there is handled there (this only marks it seen). */
  private track(p: Promise<unknown>): void {
    p.catch(() => undefined);
    this.pending.push(p);
  }

  /** `seq`: the input that caused it (late input is identified by it), or undefined for a tick's emissions. */
  private emit(e: Emission, seq?: number): void {
    const def = this.def;
    if (e.kind === "late") {
      windowMetrics.late(def.name);
      const h = natsHeaders();
      h.set(REJECT_REASON_HEADER, `late for window ${def.name}: ${e.reason}`);
      const body = e.partial === undefined ? { value: e.value, ts: e.ts } : e.partial;
      this.track(this.publisher.publish(`rejected.late.${def.name}.${e.key}`, Buffer.from(JSON.stringify(body)), { msgId: `late:${def.name}:${seq ?? `${e.key}:${e.ts}`}`, headers: h }));
      return;
    }
    const body = JSON.stringify({
      window: def.name,
      key: e.key,
      start: e.windowStart,
      end: e.windowEnd,
      revision: e.revision,
      kind: e.kind,
      count: e.count,
      ...(e.empty === true ? { empty: true } : {}),
      ...e.results,
      ...(e.states === undefined ? {} : { states: e.states }),
    });
    windowMetrics.result(def.name, e.kind);
    const id = e.kind === "early" ? `${def.name}:${e.key}:${e.windowStart}:early:${e.count}` : `${def.name}:${e.key}:${e.windowStart}:${e.revision}`;
    const subject = `agg.${def.name}.${e.key}`;
    const trace = this.traces.take(e.key);
    if (trace === undefined) {
      this.track(this.publisher.publish(subject, Buffer.from(body), { msgId: id }));
    } else {
      // the result carries a reading's trace (see KeyTraces); tracing on: a `window result` span, its child
      const span = tracingEnabled() ? startChildSpan(SPAN.windowResult, trace.traceparent, { ...messagingAttributes(subject), "fabric.window.kind": e.kind, "fabric.window.start": e.windowStart, "fabric.window.count": e.count }, SpanKind.PRODUCER, trace.links) : undefined;
      const headers = natsHeaders();
      headers.set(TRACEPARENT, span?.traceparent ?? trace.traceparent);
      this.track(endWhenSettled(span, this.publisher.publish(subject, Buffer.from(body), { msgId: id, headers })));
    }
    // the latest result per key: a KV put is a JetStream publish to $KV.<bucket>.<key>, pipelined like the rest
    if (e.kind !== "early") this.track(this.publisher.publish(`$KV.${LATEST_BUCKET}.${def.name}.${e.key}`, Buffer.from(body)));
  }

  /**
   * Checkpoints partitions: their state and positions now, written once the outputs produced so far are stored.
   * An output that failed resets every partition to its last checkpoint (replaying re-emits it); a partition
   * whose checkpoint is fenced is dropped and its lease let go.
   */
  private async checkpointNow(parts: Partition[]): Promise<void> {
    this.syncPositions();
    const snaps = parts.map((p) => ({ p, state: p.dirty ? JSON.stringify(p.op.snapshot()) : undefined, seq: p.seq, clock: p.clock }));
    for (const p of parts) p.dirty = false;
    const outputs = this.pending;
    this.pending = [];
    try {
      await Promise.all(outputs);
    } catch (err) {
      this.log.error({ err: errorMessage(err) }, "a window output could not be stored; resuming every partition from its checkpoint");
      await this.resetAll();
      return;
    }
    for (const s of snaps) {
      try {
        await s.p.store.save(s.state, s.seq, s.clock);
        s.p.savedAt = performance.now();
      } catch (err) {
        if (err instanceof FencedError) {
          this.log.warn({ partition: s.p.index }, "checkpoint fenced: another worker owns the partition now");
          this.parts.delete(s.p.index);
          this.onLost(s.p.index);
        } else {
          s.p.dirty = true;
          this.log.warn({ partition: s.p.index, err: errorMessage(err) }, "checkpoint not written; next time");
        }
      }
    }
    this.lastCheckpoint = performance.now();
  }

  /** Claims a partition's checkpoint (fencing a previous owner) and restores its operator. */
  private async load(index: number): Promise<Partition> {
    const store = new CheckpointStore(this.checkpoints, `${this.def.name}.p${index}`);
    const cp = await store.claim();
    const op = cp.state === undefined ? createOperator(this.def) : restoreOperator(this.def, JSON.parse(cp.state) as OperatorState);
    const p: Partition = { index, store, op, seq: cp.seq, clock: cp.clock, dirty: false, savedAt: performance.now() };
    this.parts.set(index, p);
    return p;
  }

  /** Drops in-memory state and resumes every owned partition from its checkpoint. */
  private async resetAll(): Promise<void> {
    await this.closeReader();
    const indexes = this.owned();
    this.parts.clear();
    this.pending = [];
    for (const i of indexes) {
      try {
        await this.load(i);
      } catch (err) {
        this.log.warn({ partition: i, err: errorMessage(err) }, "partition not resumed; letting it go");
        this.onLost(i);
      }
    }
    await this.startReader();
  }
}

function parseBody(m: JsMsg): Record<string, unknown> | undefined {
  try {
    // a compressed payload (Content-Encoding: gzip) is read inflated
    const v: unknown = m.headers?.get(CONTENT_ENCODING_HEADER) ? (JSON.parse(Buffer.from(messagePayload(m)).toString("utf8")) as unknown) : m.json();
    return typeof v === "object" && v !== null ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
