import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { InvalidInputError, parseInput, readJsonFile, subjectProblem, writeFileAtomic } from "../../core/index.js";
import { assertRegionName } from "../../../identity/index.js";

/** The streams a link can copy: each region's own stream of the kind, into `REGION_<peer>_<STREAM>` in the others. */
export const REGION_STREAM_KINDS = {
  events: { stream: "EVENTS", root: "events" },
  aggregates: { stream: "AGGREGATES", root: "agg" },
  telemetry: { stream: "TELEMETRY", root: "telemetry" },
} as const;
export type RegionStreamKind = keyof typeof REGION_STREAM_KINDS;

const regionName = z.string().superRefine((v, ctx) => {
  try {
    assertRegionName(v, "peer");
  } catch (err) {
    ctx.addIssue({ code: "custom", message: err instanceof Error ? err.message : String(err) });
  }
});

export const regionStreamSchema = z
  .strictObject({
    kind: z.enum(["events", "aggregates", "telemetry"]),
    /** Only these subjects of the stream are copied (within its root, e.g. `telemetry.site1.>`). */
    filter: z.string().optional(),
  })
  .superRefine((s, ctx) => {
    if (s.filter === undefined) return;
    const root = REGION_STREAM_KINDS[s.kind].root;
    const problem = subjectProblem(s.filter);
    if (problem !== undefined) ctx.addIssue({ code: "custom", path: ["filter"], message: `filter ${JSON.stringify(s.filter)} ${problem}` });
    else if (s.filter.split(".")[0] !== root) ctx.addIssue({ code: "custom", path: ["filter"], message: `filter ${JSON.stringify(s.filter)} is not within ${root}.>` });
  });
export type RegionStream = z.infer<typeof regionStreamSchema>;

export const regionLinkSchema = z.strictObject({
  peer: regionName,
  /** The peer's leaf node URL(s): this region dials. Without: the peer dials this region. */
  urls: z.array(z.string().regex(/^(nats-leaf|tls|nats|wss?):\/\/[^\s]+$/, "a leaf URL like nats-leaf://host:7422")).optional(),
  streams: z.array(regionStreamSchema).min(1).default([{ kind: "events" }]),
});
export type RegionLink = z.infer<typeof regionLinkSchema>;
export type RegionLinkInput = z.input<typeof regionLinkSchema>;

const linksFileSchema = z.strictObject({ links: z.array(regionLinkSchema) });

const LINKS_FILE = "region-links.json";

export function regionLinksFile(dataDir: string): string {
  return join(dataDir, LINKS_FILE);
}

/** The links a hub's data directory holds (`fabric region link`); none when it has no file. */
export function readRegionLinks(dataDir: string): RegionLink[] {
  const path = regionLinksFile(dataDir);
  if (!existsSync(path)) return [];
  return parseInput(linksFileSchema, readJsonFile(path), path).links;
}

/** Adds or replaces the link to `link.peer`; the running hub applies it within a second. */
export function putRegionLink(dataDir: string, input: RegionLinkInput): RegionLink {
  const link = parseInput(regionLinkSchema, input, "region link");
  const kinds = link.streams.map((s) => s.kind);
  if (new Set(kinds).size !== kinds.length) throw new InvalidInputError(`region link to ${link.peer}: a stream is named twice`, { fields: { peer: link.peer } });
  const links = readRegionLinks(dataDir).filter((l) => l.peer !== link.peer);
  writeLinks(dataDir, [...links, link].sort((a, b) => a.peer.localeCompare(b.peer)));
  return link;
}

/** Removes the link to `peer`; returns whether there was one. */
export function removeRegionLink(dataDir: string, peer: string): boolean {
  const links = readRegionLinks(dataDir);
  const rest = links.filter((l) => l.peer !== peer);
  if (rest.length === links.length) return false;
  writeLinks(dataDir, rest);
  return true;
}

function writeLinks(dataDir: string, links: RegionLink[]): void {
  if (links.length === 0) rmSync(regionLinksFile(dataDir), { force: true });
  else writeFileAtomic(regionLinksFile(dataDir), `${JSON.stringify({ links }, null, 2)}\n`, 0o600);
}

/** Where the copies of `peer`'s stream of `kind` are kept in this region. */
export function regionCopyStream(peer: string, kind: RegionStreamKind): string {
  return `REGION_${peer}_${REGION_STREAM_KINDS[kind].stream}`;
}

/** Where this region keeps the credential it dials `peer` with (0600). */
export function linkCredsFile(dataDir: string, peer: string): string {
  return join(dataDir, "regions", `${peer}.creds`);
}
