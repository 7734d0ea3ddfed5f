import { headers as natsHeaders, nuid, type NatsConnection } from "@nats-io/transport-node";
import { jetstream, type ConsumerMessages, type JsMsg } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import { z } from "zod";
import { errorMessage, JetStreamPublisher, type Logger } from "../fabric/core/index.js";
import { CHECKPOINTS_BUCKET, LATEST_BUCKET, REJECT_REASON_HEADER } from "./definitions.js";
import type { WindowDefinition } from "./definition.js";
import { WindowOperator, type Emission, type OperatorSnapshot } from "./operator.js";

/** A checkpoint at least this often (and at stop). */
export const DEFAULT_CHECKPOINT_EVERY_MS = 1_000; // 1 s
/** Processing-time work (idle close, early firings) runs when the stream's clock moved this far. */
const TICK_EVERY_MS = 1_000;

/**
 * A checkpoint's manifest (the key that compare-and-set guards): the position and the generation of the state
 * chunks. State is written in chunks (`<name>.s<generation>.<i>`, 256 KiB each) before the manifest, so a state
 * of many keys fits under the server's max payload and is never seen half written.
 */
const manifestSchema = z.strictObject({ seq: z.number().int().min(0), generation: z.string(), chunks: z.number().int().min(0) });
const CHUNK_CHARS = 256 * 1024;

export interface WindowWorkerOptions {
  connection: NatsConnection;
  definition: WindowDefinition;
  logger: Logger;
  checkpointEveryMs?: number;
}

export interface WindowWorker {
  /** The last source sequence the state includes. */
  position(): number;
  /** Checkpoints and stops (a crash is simply not calling it). */
  stop(): Promise<void>;
}

/**
 * A window worker of one definition: reads the source stream from its checkpoint on, feeds the operator, and
 * publishes results to AGGREGATES under message ids that depend only on the input (`<def>:<key>:<start>:<rev>`),
 * so a worker that resumes from its last checkpoint after a crash re-emits what it had emitted since, and
 * JetStream stores each result once. The operator's "processing time" is the source messages' stored
 * timestamps: a replay sees the same clock, so the output equals an uninterrupted run's. The checkpoint (state
 * and position) is written with compare-and-set, which fences a zombie worker: one whose write fails stops.
 */
export async function startWindowWorker(options: WindowWorkerOptions): Promise<WindowWorker> {
  const { connection: nc, definition: def } = options;
  const log = options.logger.child({ window: def.name });
  const kvm = new Kvm(nc);
  const checkpoints: KV = await kvm.open(CHECKPOINTS_BUCKET);
  const latest: KV = await kvm.open(LATEST_BUCKET);
  const publisher = new JetStreamPublisher(nc);
  const entry = await checkpoints.get(def.name);
  let revision = entry?.revision ?? 0;
  let op = new WindowOperator(def);
  let seq = 0;
  let generation = "";
  let chunkCount = 0;
  if (entry !== null && entry.operation === "PUT" && entry.length > 0) {
    const m = manifestSchema.parse(entry.json());
    let text = "";
    for (let i = 0; i < m.chunks; i++) {
      const c = await checkpoints.get(`${def.name}.s${m.generation}.${i}`);
      if (c === null || c.operation !== "PUT") throw new Error(`checkpoint of window ${def.name} is missing chunk ${i}`);
      text += c.string();
    }
    op = WindowOperator.restore(def, JSON.parse(text) as OperatorSnapshot);
    seq = m.seq;
    generation = m.generation;
    chunkCount = m.chunks;
    log.info({ seq }, "resumed from checkpoint");
  }
  let pending: Promise<unknown>[] = [];
  /** Outputs are awaited at the next checkpoint; a failure there is handled there (this only marks it seen). */
  const track = (p: Promise<unknown>): void => {
    p.catch(() => undefined);
    pending.push(p);
  };
  let lastTick = 0;
  let lastCheckpoint = Date.now();
  let fenced = false;

  const emit = (e: Emission, subjectTokens: string): void => {
    if (e.kind === "late") {
      const h = natsHeaders();
      h.set(REJECT_REASON_HEADER, `late for window ${def.name}: ${e.reason}`);
      track(publisher.publish(`rejected.${subjectTokens}`, Buffer.from(JSON.stringify({ value: e.value, ts: e.ts })), { msgId: `late:${def.name}:${e.key}:${e.ts}:${e.value}`, headers: h }));
      return;
    }
    const body = JSON.stringify({ window: def.name, key: e.key, start: e.windowStart, end: e.windowEnd, revision: e.revision, kind: e.kind, count: e.count, ...e.results });
    const id = e.kind === "early" ? `${def.name}:${e.key}:${e.windowStart}:early:${e.count}` : `${def.name}:${e.key}:${e.windowStart}:${e.revision}`;
    track(publisher.publish(`agg.${def.name}.${e.key}`, Buffer.from(body), { msgId: id }));
    if (e.kind !== "early") track(latest.put(`${def.name}.${e.key}`, body));
  };

  const checkpoint = async (): Promise<void> => {
    // the state and position now, and the outputs they produced: written once those outputs are stored
    const state = JSON.stringify(op.snapshot());
    const position = seq;
    const outputs = pending;
    pending = [];
    try {
      await Promise.all(outputs);
    } catch (err) {
      // an output was not stored: stop, so that a restart replays from the last checkpoint and emits it again
      fenced = true;
      log.error({ err: errorMessage(err) }, "a window output could not be stored; stopping (a restart resumes from the last checkpoint)");
      await messages.close().catch(() => undefined);
      return;
    }
    const gen = nuid.next();
    const chunks = Math.ceil(state.length / CHUNK_CHARS);
    try {
      for (let i = 0; i < chunks; i++) await checkpoints.put(`${def.name}.s${gen}.${i}`, state.slice(i * CHUNK_CHARS, (i + 1) * CHUNK_CHARS));
    } catch (err) {
      log.warn({ err: errorMessage(err) }, "checkpoint state not written; next time");
      return;
    }
    const manifest = JSON.stringify({ seq: position, generation: gen, chunks });
    try {
      revision = revision === 0 ? await checkpoints.create(def.name, manifest) : await checkpoints.update(def.name, manifest, revision);
    } catch (err) {
      // the manifest changed under us: another worker owns this window now
      fenced = true;
      log.error({ err: errorMessage(err) }, "checkpoint refused: another worker took over; stopping");
      await messages.close();
      return;
    }
    for (let i = 0; i < chunkCount; i++) await checkpoints.purge(`${def.name}.s${generation}.${i}`).catch(() => undefined);
    generation = gen;
    chunkCount = chunks;
    lastCheckpoint = Date.now();
  };

  const handle = (m: JsMsg): void => {
    if (fenced) return;
    seq = m.seq;
    const tokens = m.subject.split(".");
    const key = def.key.map((i) => tokens[i] ?? "").join(".");
    const now = Math.floor(Number(m.info.timestampNanos) / 1e6);
    let body: unknown;
    try {
      body = m.json();
    } catch {
      body = undefined;
    }
    const value = (body as Record<string, unknown> | undefined)?.[def.valueField];
    const ts = (body as Record<string, unknown> | undefined)?.[def.eventTimeField];
    if (typeof value !== "number" || !Number.isFinite(value) || typeof ts !== "number" || !Number.isFinite(ts) || ts <= 0) {
      const h = natsHeaders();
      h.set(REJECT_REASON_HEADER, `window ${def.name}: payload needs numeric ${def.valueField} and ${def.eventTimeField}`);
      track(publisher.publish(`rejected.${m.subject}`, m.data, { msgId: `rej:${def.name}:${m.seq}`, headers: h }));
    } else {
      for (const e of op.add(key, value, ts, now)) emit(e, key);
    }
    if (now - lastTick >= TICK_EVERY_MS) {
      lastTick = now;
      for (const e of op.tick(now)) emit(e, e.key);
    }
  };

  const js = jetstream(nc);
  const consumer = await js.consumers.get(def.source.stream, { filter_subjects: [def.source.filter], ...(seq > 0 ? { opt_start_seq: seq + 1, deliver_policy: "by_start_sequence" as const } : {}) });
  let busy: Promise<void> = Promise.resolve();
  const messages: ConsumerMessages = await consumer.consume({
    callback: (m) => {
      handle(m);
      if (Date.now() - lastCheckpoint >= (options.checkpointEveryMs ?? DEFAULT_CHECKPOINT_EVERY_MS)) {
        lastCheckpoint = Date.now();
        busy = busy.then(checkpoint);
      }
    },
  });
  return {
    position: () => seq,
    stop: async () => {
      await messages.close();
      await busy;
      if (!fenced) await checkpoint();
      publisher.close();
    },
  };
}
