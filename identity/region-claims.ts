import type { UserPermissionLimits } from "./claims.js";

/**
 * What crosses a link between two regions, as account JWT exports and imports (docs/regions-design.md).
 *
 * Region `r` dials peer `p` with a leaf remote bound to a link account of its own (`link-<p>`, in r only); on p's
 * side the leaf user is a user of the tenant account. Loop detection then never sees a loop (a ring of regions
 * works), and nothing is transitive: only what r's tenant account exports to the link account crosses, and what
 * arrives lands under `region.<origin>.…`, which is exported nowhere.
 */

/** Subjects whose live traffic crosses a link (interest only): in the other region under `region.<origin>.<subject>`. */
export const REGION_LIVE_STREAMS = ["telemetry.>", "events.>", "agg.>"] as const;
/** Requests that cross a link: `region.<peer>.cmd.…` in one region is `cmd.…` in the peer. */
export const REGION_LIVE_SERVICES = ["cmd.>"] as const;

export const regionSubjects = {
  /** Where `<subject>` of region `region` appears in the others. */
  mount: (region: string, subject: string): string => `region.${region}.${subject}`,
  /** Where a region's consumer for `receiver` delivers `kind` to the receiver's copy stream. */
  delivery: (receiver: string, origin: string, kind: string): string => `$REGION.src.${receiver}.${origin}.${kind}`,
  deliveries: (receiver: string, origin: string): string => `$REGION.src.${receiver}.${origin}.>`,
  /** Flow-control answers of a receiver's copy stream to the origin's consumer for it. */
  flowControl: (receiver: string): string => `$JS.FC.*.${regionSourceConsumer(receiver)}.*`,
  /** A region's account JWT updates, published for its peers. */
  claimsOut: "$REGION.claims.out",
  /** Account JWT updates from region `origin`. */
  claimsIn: (origin: string): string => `$REGION.claims.in.${origin}`,
  claimsInAll: "$REGION.claims.in.*",
} as const;

/** The durable consumer, on a region's own stream, that the copy stream of region `receiver` sources from. */
export function regionSourceConsumer(receiver: string): string {
  return `region-${receiver}`;
}

/** The link account of a region for the link it dials to `peer` (an account of that region's keystore only). */
export function linkAccountName(peer: string): string {
  return `link-${peer}`;
}

interface Export {
  name: string;
  subject: string;
  type: "stream" | "service";
}
interface Import {
  name: string;
  subject: string;
  account: string;
  type: "stream" | "service";
  local_subject?: string;
}

const exp = (type: Export["type"], subject: string): Export => ({ name: subject, subject, type });
const imp = (type: Import["type"], account: string, subject: string, localSubject?: string): Import => ({
  name: localSubject === undefined ? subject : `${subject} as ${localSubject}`,
  subject,
  account,
  type,
  ...(localSubject === undefined ? {} : { local_subject: localSubject }),
});

export interface RegionAccountClaims {
  exports: Export[];
  imports: Import[];
}

/**
 * The tenant account's exports and imports in region `region`, which dials `links` (each with its link
 * account's key). Public exports: only accounts of this operator can import them, and in a region's keystore
 * those are the fabric's own. Empty when the region dials no one.
 */
export function tenantRegionClaims(region: string, links: readonly { peer: string; linkKey: string }[]): RegionAccountClaims {
  if (links.length === 0) return { exports: [], imports: [] };
  const exports: Export[] = [
    ...REGION_LIVE_STREAMS.map((s) => exp("stream", s)),
    ...REGION_LIVE_SERVICES.map((s) => exp("service", s)),
    exp("service", "$JS.API.CONSUMER.>"),
    exp("stream", regionSubjects.claimsOut),
  ];
  const imports: Import[] = [];
  for (const { peer, linkKey } of [...links].sort((a, b) => a.peer.localeCompare(b.peer))) {
    exports.push(exp("stream", regionSubjects.deliveries(peer, region)), exp("service", regionSubjects.flowControl(peer)));
    imports.push(
      ...REGION_LIVE_STREAMS.map((s) => imp("stream", linkKey, s, regionSubjects.mount(peer, s))),
      ...REGION_LIVE_SERVICES.map((s) => imp("service", linkKey, s, regionSubjects.mount(peer, s))),
      imp("service", linkKey, `$JS.${peer}.API.>`),
      imp("stream", linkKey, regionSubjects.deliveries(region, peer)),
      imp("service", linkKey, regionSubjects.flowControl(region)),
      imp("stream", linkKey, regionSubjects.claimsOut, regionSubjects.claimsIn(peer)),
    );
  }
  return { exports, imports };
}

/**
 * The link account of region `region` for its link to `peer`: its subject space is the peer's tenant account
 * (the leaf connection carries it there). It exports what the peer sends (to the tenant account's mounts) and
 * imports what the region sends.
 */
export function linkAccountClaims(region: string, peer: string, tenantKey: string): RegionAccountClaims {
  return {
    exports: [
      ...REGION_LIVE_STREAMS.map((s) => exp("stream", s)),
      ...REGION_LIVE_SERVICES.map((s) => exp("service", s)),
      exp("service", `$JS.${peer}.API.>`),
      exp("stream", regionSubjects.deliveries(region, peer)),
      exp("service", regionSubjects.flowControl(region)),
      exp("stream", regionSubjects.claimsOut),
    ],
    imports: [
      ...REGION_LIVE_STREAMS.map((s) => imp("stream", tenantKey, s, regionSubjects.mount(region, s))),
      ...REGION_LIVE_SERVICES.map((s) => imp("service", tenantKey, s, regionSubjects.mount(region, s))),
      // the server maps `$JS.<region>.API.>` to `$JS.API.>` in a leaf connection's local account
      imp("service", tenantKey, "$JS.API.CONSUMER.>"),
      imp("stream", tenantKey, regionSubjects.deliveries(peer, region)),
      imp("service", tenantKey, regionSubjects.flowControl(peer)),
      imp("stream", tenantKey, regionSubjects.claimsOut, regionSubjects.claimsIn(region)),
    ],
  };
}

/**
 * The permissions of the credential region `region` dials `peer` with: a tenant-account user, for leaf
 * connections only. `pub` is what it may send into the peer, `sub` what the peer may send back; each entry is
 * needed (without the reply subjects sources stay inactive without an error, without flow control they stall).
 */
export function linkUserPermissions(region: string, peer: string): UserPermissionLimits {
  return {
    allowed_connection_types: ["LEAFNODE"],
    pub: {
      allow: [
        ...REGION_LIVE_SERVICES,
        ...REGION_LIVE_STREAMS.map((s) => regionSubjects.mount(region, s)),
        `$JS.${peer}.API.CONSUMER.>`,
        regionSubjects.flowControl(region),
        regionSubjects.deliveries(peer, region),
        regionSubjects.claimsIn(region),
        "_INBOX.>",
        "$JSC.R.>",
      ],
    },
    sub: {
      allow: [
        ...REGION_LIVE_STREAMS,
        ...REGION_LIVE_SERVICES.map((s) => regionSubjects.mount(region, s)),
        `$JS.${region}.API.CONSUMER.>`,
        regionSubjects.flowControl(peer),
        regionSubjects.deliveries(region, peer),
        regionSubjects.claimsOut,
        "_R_.>",
      ],
    },
    subs: -1,
    data: -1,
    payload: -1,
  };
}
