import { isDeepStrictEqual } from "node:util";
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager, type JetStreamManager, type StreamConfig, type StreamSource } from "@nats-io/jetstream";
import { nuid, type NatsConnection } from "@nats-io/transport-node";
import { z } from "zod";
import { edgeSourceConsumer, errorMessage, FabricError, resetConsumer, type Logger } from "../core/index.js";
import { EDGE_STREAMS, hubSiteSource, sourcedSites, withoutSiteSource, withSiteSource, type SiteStreamKind } from "../../leafnode-config/index.js";

/** The site's entry among a hub stream's sources. */
function siteEntry(sources: readonly StreamSource[] | undefined, site: string): StreamSource | undefined {
  return (sources ?? []).find((e) => sourcedSites([e])[0] === site);
}

/**
 * Where the last message the hub holds from a site's stream came from, by its `Nats-Stream-Source` header
 * (`<stream>:<api hash>:C=<consumer hash> <sequence> <filters> <destinations> <subject>`): the sequence in the site's
 * stream, and whether nats-server's source of `entry` is the one that stored it (the same filters and
 * destinations: nats-server then knows where it left off by itself). Undefined when the hub holds nothing from
 * the site, or its last message on the site's subjects did not come from it (a direct publish).
 */
async function lastSourced(nc: NatsConnection, site: string, kind: SiteStreamKind, entry: StreamSource): Promise<{ seq: number; sameSource: boolean; data: Uint8Array } | undefined> {
  const s = EDGE_STREAMS[kind];
  const jsm = await jetstreamManager(nc);
  const ci = await jsm.consumers.add(s.hub, { description: "hub site source check", filter_subject: s.subject(site), deliver_policy: DeliverPolicy.Last, ack_policy: AckPolicy.None, mem_storage: true, inactive_threshold: 10_000_000_000 });
  let header: string;
  let data: Uint8Array;
  try {
    if (ci.num_pending === 0) return undefined;
    const c = await jetstream(nc).consumers.get(s.hub, ci.name);
    const m = await c.next({ expires: 2_000 });
    header = m?.headers?.get("Nats-Stream-Source") ?? "";
    data = m?.data ?? new Uint8Array();
  } finally {
    await jsm.consumers.delete(s.hub, ci.name).catch(() => undefined);
  }
  const [origin, seq, filters, destinations] = header.split(" ");
  const n = Number(seq);
  if (origin === undefined || !origin.startsWith(`${s.edge}:`) || !Number.isSafeInteger(n) || n <= 0) return undefined;
  const transforms = entry.subject_transforms ?? [];
  const sameSource = transforms.length > 0 && filters === transforms.map((t) => t.src).join("\f") && destinations === transforms.map((t) => t.dest).join("\f");
  return { seq: n, sameSource, data };
}

/** A reply subject for a request of the hub's to a site: a leaf's permissions let the site answer on its own inboxes only. */
const siteInbox = (site: string): string => `_INBOX.${site}.hub.${nuid.next()}`;

const msgGetReplySchema = z.looseObject({ message: z.looseObject({ data: z.string().optional() }).optional(), error: z.looseObject({}).optional() });

/**
 * Whether the site's stream still holds, at `seq`, the message the hub holds as its last from it (the same
 * data): a site whose streams were made again since (its data directory lost, say) numbers from 1 again, and
 * moving its consumer past an old sequence would skip its new messages.
 */
async function siteStillHolds(nc: NatsConnection, site: string, kind: SiteStreamKind, seq: number, data: Uint8Array): Promise<boolean> {
  const m = await nc.request(`$JS.${site}.API.STREAM.MSG.GET.${EDGE_STREAMS[kind].edge}`, JSON.stringify({ seq }), { timeout: 5_000, noMux: true, reply: siteInbox(site) });
  const r = msgGetReplySchema.parse(m.json());
  return r.message !== undefined && Buffer.from(r.message.data ?? "", "base64").equals(Buffer.from(data));
}

/**
 * Puts the fabric's source entry for a site on a hub stream, replacing the site's entry if it has one (which
 * restarts the source: nats-server sets it up at once, past any retry backoff). A source nats-server has not
 * stored from before (the entry is new or changed: its filters and transforms are part of its identity) starts
 * at the site consumer's ack floor, which lags what the hub stored by up to a flow-control window; so the site's
 * consumer is first moved just past the last message the hub holds from it (its `CONSUMER.RESET` with a
 * sequence, across the leaf link), and nothing is stored twice. When the site cannot be reached for that, the
 * old entry is put back and the error says so. `c` is the stream's config as just read.
 */
export async function putSiteSource(nc: NatsConnection, jsm: JetStreamManager, c: StreamConfig, site: string, kind: SiteStreamKind, log: Logger): Promise<void> {
  const name = EDGE_STREAMS[kind].hub;
  const wanted = hubSiteSource(site, kind) as unknown as StreamSource;
  const had = await dropSiteSource(jsm, c, site);
  try {
    const last = await lastSourced(nc, site, kind, wanted);
    if (last !== undefined && !last.sameSource) {
      if (await siteStillHolds(nc, site, kind, last.seq, last.data)) {
        await resetConsumer(nc, { api: `$JS.${site}.API`, stream: EDGE_STREAMS[kind].edge, consumer: edgeSourceConsumer(site), seq: last.seq + 1, reply: siteInbox(site) });
        log.info({ site, stream: name, from: last.seq + 1 }, "a new source for a site: its consumer moved past what the hub holds");
      } else {
        // better twice than never: the site's stream is not the one the hub's last message came from
        log.warn({ site, stream: name, lastSeq: last.seq }, "a new source for a site whose stream no longer holds the hub's last message from it: it starts at the site's ack floor");
      }
    }
  } catch (err) {
    if (had) await jsm.streams.update(name, c);
    throw new FabricError("FABRIC_ERR_SITE_SOURCE", `cannot put the source of site ${site} on ${name} without storing anything twice: ${errorMessage(err)} (is the site linked?)`, { cause: err, fields: { site, stream: name } });
  }
  await jsm.streams.update(name, { ...c, sources: withSiteSource(c.sources, site, kind) });
}

/** Takes the site's entry off a hub stream whose config is `c`, if it has one; returns whether it had. */
export async function dropSiteSource(jsm: JetStreamManager, c: StreamConfig, site: string): Promise<boolean> {
  const sources = withoutSiteSource(c.sources, site);
  if (sources.length === (c.sources ?? []).length) return false;
  await jsm.streams.update(c.name, { ...c, sources });
  return true;
}

/** Whether the site's entry on the stream is the fabric's as it is (nothing to do). */
export function siteSourceCurrent(c: Pick<StreamConfig, "sources">, site: string, kind: SiteStreamKind): boolean {
  const current = siteEntry(c.sources, site);
  return current !== undefined && isDeepStrictEqual(current, hubSiteSource(site, kind));
}
