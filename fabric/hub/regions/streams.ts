import { DeliverPolicy, ReplayPolicy, type ConsumerConfig, type JetStreamManager, type StreamConfig, type StreamSource } from "@nats-io/jetstream";
import { isDeepStrictEqual } from "node:util";
import { regionSourceConsumer, regionSubjects } from "../../../identity/index.js";
import { REGION_STREAM_KINDS, regionCopyStream, type RegionLink, type RegionStream } from "./links.js";

const ms2ns = (ms: number): number => ms * 1_000_000;
/** Heartbeats of a region's consumer for a peer while it has nothing to send: a cut shows within a few. */
export const REGION_SOURCE_HEARTBEAT_MS = 1_000;
/**
 * Messages in flight per link and stream. With the flow-control ack policy a consumer asks for flow control
 * (which also acknowledges) once half its byte window is out (up to 16 MiB after a ramp-up), or when it reaches
 * this limit, and then stops until the answer is back: one round trip over the WAN with nothing delivered. The
 * limit is set far above what the byte window holds of small messages (~80 000 of ~200 bytes), so the byte
 * window, which lets delivery go on while the answer travels, is what paces a link.
 */
export const REGION_MAX_ACK_PENDING = 250_000;
/**
 * The copies' duplicate window. A copy is exactly once by its source's sequence tracking, not by message id:
 * ids are unique per origin region, not across regions, so the window only has to be valid.
 */
const COPY_DUPLICATE_WINDOW_MS = 1_000;
/** A source with no contact for this long counts as down. */
export const REGION_SOURCE_DOWN_MS = 5 * REGION_SOURCE_HEARTBEAT_MS;

/**
 * The durable consumer, on this region's own stream, that the peer's copy stream sources from (durable
 * sourcing): it lives here, so the peer resumes where it left off after a cut or a restart of either side. Its
 * filter (the stream's own root) is what keeps a ring loop-free: nothing a region received is shipped on.
 */
export function originConsumerConfig(region: string, peer: string, s: RegionStream): Partial<ConsumerConfig> {
  const k = REGION_STREAM_KINDS[s.kind];
  return {
    durable_name: regionSourceConsumer(peer),
    description: `region ${peer}'s copy of ${k.stream} from region ${region}`,
    deliver_subject: regionSubjects.delivery(peer, region, s.kind),
    filter_subject: s.filter ?? `${k.root}.>`,
    deliver_policy: DeliverPolicy.All,
    ack_policy: "flow_control" as ConsumerConfig["ack_policy"],
    flow_control: true,
    idle_heartbeat: ms2ns(REGION_SOURCE_HEARTBEAT_MS),
    max_deliver: -1,
    max_ack_pending: REGION_MAX_ACK_PENDING,
    replay_policy: ReplayPolicy.Instant,
  };
}

/** This region's source of the peer's stream: the peer's consumer for this region, its subjects under `region.<peer>.`. */
export function copySource(region: string, peer: string, s: RegionStream): StreamSource {
  const k = REGION_STREAM_KINDS[s.kind];
  return {
    name: k.stream,
    external: { api: `$JS.${peer}.API`, deliver: "" },
    consumer: { name: regionSourceConsumer(region), deliver_subject: regionSubjects.delivery(region, peer, s.kind) },
    subject_transforms: [{ src: `${k.root}.>`, dest: regionSubjects.mount(peer, `${k.root}.>`) }],
  } as unknown as StreamSource;
}

/**
 * Sets up one link's streams in this region (idempotent): for each stream kind, the consumer the peer copies
 * this region's stream through, and the copy of the peer's stream (`REGION_<peer>_<STREAM>`, no subjects of its
 * own: only its source writes it, so a live message under `region.<peer>.…` is never stored twice).
 */
export async function ensureLinkStreams(jsm: JetStreamManager, region: string, link: RegionLink, replicas: number): Promise<void> {
  for (const s of link.streams) {
    const k = REGION_STREAM_KINDS[s.kind];
    const want = originConsumerConfig(region, link.peer, s);
    const have = await jsm.consumers.info(k.stream, regionSourceConsumer(link.peer)).catch(() => undefined);
    if (have === undefined) await jsm.consumers.add(k.stream, want);
    else if (have.config.filter_subject !== want.filter_subject) await jsm.consumers.update(k.stream, regionSourceConsumer(link.peer), { filter_subject: want.filter_subject ?? "" });

    const origin = (await jsm.streams.info(k.stream)).config;
    const name = regionCopyStream(link.peer, s.kind);
    const config: Partial<StreamConfig> & { name: string } = {
      name,
      description: `${k.stream} of region ${link.peer}, under region.${link.peer}.${k.root}.>`,
      subjects: [],
      retention: origin.retention,
      storage: origin.storage,
      num_replicas: replicas,
      max_age: origin.max_age,
      duplicate_window: ms2ns(COPY_DUPLICATE_WINDOW_MS),
      sources: [copySource(region, link.peer, s)],
    };
    const current = await jsm.streams.info(name).catch(() => undefined);
    if (current === undefined) await jsm.streams.add(config);
    else if (!isDeepStrictEqual(current.config.sources, config.sources)) await jsm.streams.update(name, { ...current.config, sources: config.sources ?? [] });
  }
}

/** Deletes this region's consumers for peers it no longer links to (the peers' copies keep what they have). */
export async function dropUnlinkedConsumers(jsm: JetStreamManager, linked: ReadonlySet<string>): Promise<string[]> {
  const dropped: string[] = [];
  for (const k of Object.values(REGION_STREAM_KINDS)) {
    for await (const c of jsm.consumers.list(k.stream)) {
      const peer = c.name.startsWith("region-") ? c.name.slice("region-".length) : undefined;
      if (peer === undefined || linked.has(peer)) continue;
      await jsm.consumers.delete(k.stream, c.name);
      dropped.push(`${k.stream}/${c.name}`);
    }
  }
  return dropped;
}
