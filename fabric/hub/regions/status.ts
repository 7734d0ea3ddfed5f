import type { JetStreamManager } from "@nats-io/jetstream";
import { regionSourceConsumer } from "../../../identity/index.js";
import { regionCopyStream, REGION_STREAM_KINDS, type RegionLink, type RegionStreamKind } from "./links.js";
import { REGION_SOURCE_DOWN_MS } from "./streams.js";

export interface RegionStreamStatus {
  kind: RegionStreamKind;
  /** This region's copy of the peer's stream. */
  copy: string;
  /** Messages in the copy. */
  messages: number;
  /** Messages the copy's source knows it has yet to take from the peer. */
  lag: number;
  /** Milliseconds since the copy's source last heard from the peer (-1: never). */
  activeMs: number;
  /** This region's messages the peer has yet to take (its consumer here: pending and unacknowledged). */
  backlog: number;
}

export interface RegionLinkStatus {
  peer: string;
  /** This region dials the peer, or the peer dials it; unknown when read from JetStream alone (`fabric status`). */
  dials: boolean | undefined;
  /** The peer was heard from within the last few heartbeats. */
  up: boolean;
  streams: RegionStreamStatus[];
  /** The last time the link could not be applied, why. */
  error?: string;
}

/** A link whose state to read: whether this region dials it is known from the links file only. */
export type LinkToShow = Pick<RegionLink, "peer" | "streams"> & { dials?: boolean | undefined };

/** The links of a links file, to show. */
export function linksToShow(links: readonly RegionLink[]): LinkToShow[] {
  return links.map((l) => ({ peer: l.peer, streams: l.streams, dials: l.urls !== undefined }));
}

/**
 * The links a region has, found in JetStream alone (its copy streams `REGION_<peer>_<STREAM>`): for a status read
 * away from the hub's data directory. Whether this region dials is not known there.
 */
export async function discoverRegionLinks(jsm: JetStreamManager): Promise<LinkToShow[]> {
  const byPeer = new Map<string, RegionLink["streams"]>();
  for await (const si of jsm.streams.list()) {
    for (const [kind, k] of Object.entries(REGION_STREAM_KINDS) as [RegionStreamKind, (typeof REGION_STREAM_KINDS)[RegionStreamKind]][]) {
      const suffix = `_${k.stream}`;
      const name = si.config.name;
      if (!name.startsWith("REGION_") || !name.endsWith(suffix)) continue;
      const peer = name.slice("REGION_".length, -suffix.length);
      byPeer.set(peer, [...(byPeer.get(peer) ?? []), { kind }]);
    }
  }
  return [...byPeer.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([peer, streams]) => ({ peer, streams }));
}

/** Each link's state, read from JetStream: its copies' sources here and this region's consumers for the peer. */
export async function regionLinksStatus(
  jsm: JetStreamManager,
  links: readonly LinkToShow[],
  errors: ReadonlyMap<string, string> = new Map(),
): Promise<RegionLinkStatus[]> {
  return Promise.all(
    links.map(async (l) => {
      const streams = await Promise.all(
        l.streams.map(async (s): Promise<RegionStreamStatus> => {
          const copy = regionCopyStream(l.peer, s.kind);
          const si = await jsm.streams.info(copy).catch(() => undefined);
          const src = si?.sources?.[0];
          const ci = await jsm.consumers.info(REGION_STREAM_KINDS[s.kind].stream, regionSourceConsumer(l.peer)).catch(() => undefined);
          return {
            kind: s.kind,
            copy,
            messages: si?.state.messages ?? 0,
            lag: src?.lag ?? 0,
            activeMs: src === undefined || src.active < 0 ? -1 : Math.round(src.active / 1_000_000),
            backlog: ci === undefined ? 0 : ci.num_pending + ci.num_ack_pending,
          };
        }),
      );
      const error = errors.get(l.peer);
      return { peer: l.peer, dials: l.dials, up: streams.some((s) => s.activeMs >= 0 && s.activeMs < REGION_SOURCE_DOWN_MS), streams, ...(error === undefined ? {} : { error }) };
    }),
  );
}
