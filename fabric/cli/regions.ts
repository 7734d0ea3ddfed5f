import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Command } from "commander";
import { jetstreamManager } from "@nats-io/jetstream";
import { defaultHubDataDir, InvalidInputError, out, outJson, readJsonFile, say } from "../core/index.js";
import { assertRegionName } from "../../identity/index.js";
import { hubStateSchema, linksToShow, putRegionLink, readRegionLinks, regionLinksStatus, removeRegionLink, type RegionStreamKind } from "../hub/index.js";
import { renderRegionLinks } from "./render.js";
import { withConnection, withTenant, type ConnFlags } from "./tenant.js";

/** The region of the hub whose data directory this is; a clear error when it is no region. */
function hubRegion(dataDir: string): string {
  const path = join(dataDir, "hub.json");
  if (!existsSync(path)) throw new InvalidInputError(`no hub at ${dataDir} (no hub.json): run this on the hub's machine with its --data`);
  const state = hubStateSchema.safeParse(readJsonFile(path));
  if (!state.success) throw new InvalidInputError(`${path} is damaged: is ${dataDir} a hub's data directory?`);
  const region = state.data.region;
  if (region === undefined) throw new InvalidInputError(`the hub at ${dataDir} is no region: start it with fabric up --region <name>`);
  return region;
}

/** `--stream events` or `--stream telemetry=telemetry.site1.>`. */
function parseStream(spec: string): { kind: RegionStreamKind; filter?: string } {
  const [kind, filter] = spec.split("=", 2) as [string, string | undefined];
  if (kind !== "events" && kind !== "aggregates" && kind !== "telemetry") throw new InvalidInputError(`--stream ${JSON.stringify(spec)}: the kind is events, aggregates or telemetry`);
  return filter === undefined ? { kind } : { kind, filter };
}

/** `fabric region link|unlink|ls`: links between regions (hubs with their own JetStream domains, one operator). */
export function addRegionCommands(program: Command): void {
  const region = program.command("region").description("links to other regions (run on the hub's machine: the hub applies its data directory's links file)");
  region
    .command("link <peer>")
    .description("link this region to a peer region: live traffic both ways under region.<peer>.…, and copies of its streams in REGION_<peer>_<STREAM>")
    .option("--url <url...>", "the peer's leaf node URL(s): this region dials the peer (give it on one side of a link only; the other side links without --url)")
    .option("--stream <spec>", "a stream to copy both ways (repeat for more): events (the default), aggregates, telemetry; kind=<subject> copies only those subjects", (v: string, all: string[]) => [...all, v], [] as string[])
    .option("--data <dir>", "the hub's data directory")
    .action((peer: string, flags: { url?: string[]; stream: string[]; data?: string }) => {
      const dataDir = resolve(flags.data ?? defaultHubDataDir());
      const self = hubRegion(dataDir);
      if (assertRegionName(peer, "peer") === self) throw new InvalidInputError(`region ${self} cannot link to itself`);
      const link = putRegionLink(dataDir, { peer, ...(flags.url === undefined ? {} : { urls: flags.url }), streams: (flags.stream.length === 0 ? ["events"] : flags.stream).map(parseStream) });
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
      const status = await regionLinksStatus(await jetstreamManager(nc), linksToShow(links));
      if (flags.json === true) outJson(status);
      else out(renderRegionLinks(status).join("\n"));
    });
  });
}
