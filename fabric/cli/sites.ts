import type { Command } from "commander";
import { assertToken, out, outJson, parseInput, say } from "../core/index.js";
import { DEFAULT_SITE_STREAMS, SITE_STREAM_KINDS, siteRegistrationSchema } from "../../leafnode-config/index.js";
import { addSite, listSites, removeSite } from "../hub/index.js";
import { renderSites } from "./render.js";
import { withConnection, withTenant, type ConnFlags } from "./tenant.js";

/** `fabric site add|ls|rm`: the edge sites whose streams the hub sources. */
export function addSiteCommands(program: Command): void {
  const site = program.command("site").description("edge sites: the hub sources their EDGE_EVENTS and EDGE_TELEMETRY streams");
  withConnection(
    site
      .command("add <site>")
      .description("source a site's streams (a site's fabric-edge also registers itself)")
      .option("--streams <kinds>", `the kinds to source, comma-separated: ${SITE_STREAM_KINDS.join(", ")}`, DEFAULT_SITE_STREAMS.join(",")),
  ).action(async (name: string, flags: ConnFlags & { streams: string }) => {
    assertToken(name, "site");
    const kinds = parseInput(siteRegistrationSchema, { streams: flags.streams.split(",").map((k) => k.trim()) }, "--streams");
    await withTenant(flags, async (nc) => {
      await addSite(nc, name, kinds.streams);
      say(`site ${name}: the hub sources its streams (through $JS.${name}.API, from its durable consumers)`);
    });
  });
  withConnection(site.command("ls").description("sites, their link, backlog and the hub's sources").option("--json", "JSON output")).action(async (flags: ConnFlags & { json?: boolean }) => {
    await withTenant(flags, async (nc) => {
      const sites = await listSites(nc);
      if (flags.json === true) outJson(sites);
      else out(renderSites(sites).join("\n"));
    });
  });
  withConnection(site.command("rm <site>").description("stop sourcing a site (what was sourced stays)")).action(async (name: string, flags: ConnFlags) => {
    assertToken(name, "site");
    await withTenant(flags, async (nc) => {
      if (await removeSite(nc, name)) say(`site ${name}: no longer sourced`);
      else {
        say(`site ${name} is not sourced`);
        process.exitCode = 1;
      }
    });
  });
}
