import { resolve } from "node:path";
import type { Command } from "commander";
import { jetstreamManager } from "@nats-io/jetstream";
import { defaultHubDataDir, InvalidInputError, out, outJson, say } from "../core/index.js";
import { putRegionLink, readRegionLinks, regionLinksStatus, removeRegionLink, type RegionLinkStatus, type RegionStreamKind } from "../hub/index.js";
import { withConnection, withTenant, type ConnFlags } from "./tenant.js";

/** `--stream events` or `--stream telemetry=telemetry.site1.>`. */
function parseStream(spec: string): { kind: RegionStreamKind; filter?: string } {
  const [kind, filter] = spec.split("=", 2) as [string, string | undefined];
  if (kind !== "events" && kind !== "aggregates" && kind !== "telemetry") throw new InvalidInputError(`--stream ${JSON.stringify(spec)}: the kind is events, aggregates or telemetry`);
  return filter === undefined ? { kind } : { kind, filter };
}

export function renderRegionLinks(links: readonly RegionLinkStatus[]): string[] {
  if (links.length === 0) return ["no region links"];
  const lines: string[] = [];
  for (const l of links) {
    lines.push(`region ${l.peer}: ${l.up ? "up" : "DOWN"} (${l.dials ? "this region dials it" : "it dials this region"})${l.error === undefined ? "" : ` error: ${l.error}`}`);
    for (const s of l.streams) {
      lines.push(`  ${s.kind}: copy ${s.copy} ${s.messages} msgs, lag ${s.lag}, last heard ${s.activeMs < 0 ? "never" : `${(s.activeMs / 1000).toFixed(1)} s ago`}; backlog for ${l.peer}: ${s.backlog}`);
    }
  }
  return lines;
}

/** `fabric region link|unlink|ls`: links between regions (hubs with their own JetStream domains, one operator). */
export function addRegionCommands(program: Command): void {
  const region = program.command("region").description("links to other regions (run on the hub's machine: the hub applies its data directory's links file)");
  region
    .command("link <peer>")
    .description("link this region to a peer region: live traffic both ways under region.<peer>.…, and copies of its streams in REGION_<peer>_<STREAM>")
    .option("--url <url...>", "the peer's leaf node URL(s): this region dials the peer (give it on one side of a link only; the other side links without --url)")
    .option("--stream <kind[=filter]...>", "streams to copy both ways: events (default), aggregates, telemetry; with =<subject> only those subjects", ["events"])
    .option("--data <dir>", "the hub's data directory")
    .action((peer: string, flags: { url?: string[]; stream: string[]; data?: string }) => {
      const dataDir = resolve(flags.data ?? defaultHubDataDir());
      const link = putRegionLink(dataDir, { peer, ...(flags.url === undefined ? {} : { urls: flags.url }), streams: flags.stream.map(parseStream) });
      say(`region ${link.peer}: linked (${link.urls === undefined ? "it dials this region" : `this region dials ${link.urls.join(", ")}`}; streams ${link.streams.map((s) => s.kind + (s.filter === undefined ? "" : `=${s.filter}`)).join(", ")}); the hub applies it within a second`);
    });
  region
    .command("unlink <peer>")
    .description("remove a link: its credential is revoked, the peer's copies of this region's streams keep what they have")
    .option("--data <dir>", "the hub's data directory")
    .action((peer: string, flags: { data?: string }) => {
      if (removeRegionLink(resolve(flags.data ?? defaultHubDataDir()), peer)) say(`region ${peer}: unlinked`);
      else {
        say(`no link to region ${peer}`);
        process.exitCode = 1;
      }
    });
  withConnection(region.command("ls").description("the links: state, copies, lag and backlog").option("--json", "JSON output")).action(async (flags: ConnFlags & { json?: boolean }) => {
    const links = readRegionLinks(resolve(flags.data ?? defaultHubDataDir()));
    await withTenant(flags, async (nc) => {
      const status = await regionLinksStatus(await jetstreamManager(nc), links);
      if (flags.json === true) outJson(status);
      else out(renderRegionLinks(status).join("\n"));
    });
  });
}
