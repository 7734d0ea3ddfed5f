import { isDeepStrictEqual } from "node:util";
import type { JetStreamManager, StreamConfig } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { edgeSourceConsumer, errorMessage, resetConsumer } from "../fabric/core/index.js";
import { EDGE_STREAMS, bufferBytes, edgeSourceConsumerConfig, edgeStreamConfig, type BufferSpec, type SiteStreamKind, type SiteStreamReport } from "../leafnode-config/index.js";
import { EdgeError } from "./errors.js";

/**
 * Creates the site's streams (EDGE_EVENTS and EDGE_TELEMETRY always, EDGE_AGGREGATES when it pre-aggregates), or
 * brings their limits and overflow policy to the options (an unchanged stream is left alone), and the durable
 * consumers the hub sources the shipped ones through. A consumer is created only when missing: an existing one
 * keeps its place (that is the point of it); one of a stream no longer shipped is removed. Run at start and on
 * every return of the link.
 */
export async function ensureSiteStreams(jsm: JetStreamManager, site: string, buffer: BufferSpec, kinds: readonly SiteStreamKind[], shipped: readonly SiteStreamKind[]): Promise<void> {
  for (const kind of kinds) {
    const want = edgeStreamConfig(site, kind, buffer, kinds.includes("aggregates")) as Partial<StreamConfig> & { name: string };
    try {
      const existing = await jsm.streams.info(want.name).catch(() => undefined);
      if (existing === undefined) await jsm.streams.add(want);
      else if (!Object.entries(want).every(([k, v]) => isDeepStrictEqual((existing.config as unknown as Record<string, unknown>)[k], v))) {
        await jsm.streams.update(want.name, { ...existing.config, ...want });
      }
      const consumer = edgeSourceConsumer(site);
      const has = await jsm.consumers.info(want.name, consumer).catch(() => undefined);
      if (!shipped.includes(kind)) {
        if (has !== undefined) await jsm.consumers.delete(want.name, consumer);
      } else if (has === undefined) await jsm.consumers.add(want.name, edgeSourceConsumerConfig(site, kind));
    } catch (err) {
      throw new EdgeError("FABRIC_ERR_EDGE_STREAMS", `cannot set up ${want.name} at site ${site}: ${errorMessage(err)}`, { cause: err });
    }
  }
}

/** Messages of a site stream the hub has not acknowledged yet (pending plus in flight on its consumer). */
export async function backlogOf(jsm: JetStreamManager, site: string, kind: SiteStreamKind): Promise<number> {
  const ci = await jsm.consumers.info(EDGE_STREAMS[kind].edge, edgeSourceConsumer(site));
  return ci.num_pending + ci.num_ack_pending;
}

/**
 * Pauses the hub's source of a site stream until a time (its durable consumer delivers nothing meanwhile; the
 * pause lapses by itself, so an agent that dies never leaves it paused for long), or resumes it (undefined).
 */
export async function pauseSource(jsm: JetStreamManager, site: string, kind: SiteStreamKind, until: number | undefined): Promise<void> {
  const stream = EDGE_STREAMS[kind].edge;
  if (until !== undefined) await jsm.consumers.pause(stream, edgeSourceConsumer(site), new Date(until));
  else await jsm.consumers.resume(stream, edgeSourceConsumer(site));
}

/** Counts what the buffer dropped before the hub had it: sequences gone from the stream that the hub never acked. */
export class DropCounter {
  private countedUpTo = 0;
  dropped = 0;

  /** `firstSeq`: the stream's first sequence now; `ackFloor`: the hub's ack floor (stream sequence). */
  observe(firstSeq: number, ackFloor: number): number {
    const goneUpTo = firstSeq - 1;
    const from = Math.max(ackFloor, this.countedUpTo);
    if (goneUpTo > from) this.dropped += goneUpTo - from;
    this.countedUpTo = Math.max(this.countedUpTo, goneUpTo);
    return this.dropped;
  }
}

/**
 * One stream's part of the site report: its size, the hub's backlog and its age, drops, whether it is full. A
 * stream the site does not ship has no backlog (nothing waits for the hub) and drops nothing the hub wanted.
 */
export async function streamReport(jsm: JetStreamManager, site: string, kind: SiteStreamKind, buffer: BufferSpec, drops: DropCounter, shipped: boolean, preAggregates: boolean, now = Date.now()): Promise<SiteStreamReport> {
  const name = EDGE_STREAMS[kind].edge;
  const si = await jsm.streams.info(name);
  const ci = shipped ? await jsm.consumers.info(name, edgeSourceConsumer(site)) : undefined;
  const ackFloor = ci === undefined ? si.state.last_seq : ci.ack_floor.stream_seq;
  const backlog = ci === undefined ? 0 : ci.num_pending + ci.num_ack_pending;
  let oldestBacklogMs = 0;
  if (backlog > 0 && si.state.messages > 0) {
    const seq = Math.max(ackFloor + 1, si.state.first_seq);
    const at = seq === si.state.first_seq ? Date.parse(si.state.first_ts) : await jsm.streams.getMessage(name, { seq }).then((m) => (m === null ? NaN : Date.parse(m.timestamp)), () => NaN);
    if (Number.isFinite(at)) oldestBacklogMs = Math.max(0, now - at);
  }
  const maxBytes = bufferBytes(buffer, kind, preAggregates);
  return {
    stream: name,
    messages: si.state.messages,
    bytes: si.state.bytes,
    maxBytes,
    overflow: buffer.overflow[kind],
    backlog,
    oldestBacklogMs,
    dropped: drops.observe(si.state.first_seq, ackFloor),
    // a stream refuses (discard new) or drops (discard old) once a message would not fit: call it full within 1 %
    full: si.state.bytes >= maxBytes * 0.99,
  };
}

/**
 * Resets the delivery state of the hub's source consumer of a site stream (nats-server 2.14's consumer reset):
 * delivery starts again from the ack floor, with delivery sequences from 1.
 */
export async function resetSource(nc: NatsConnection, site: string, kind: SiteStreamKind): Promise<void> {
  await resetConsumer(nc, { api: "$JS.API", stream: EDGE_STREAMS[kind].edge, consumer: edgeSourceConsumer(site) });
}
