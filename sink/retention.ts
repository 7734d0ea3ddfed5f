import pg from "pg";
import type { Logger } from "../fabric/core/index.js";
import type { PostgresSinkConfig } from "./options.js";
import { detectLayout, retentionFunction, tableName } from "./schema.js";
import type { TableSpec } from "./table-spec.js";
import { CONNECT_TIMEOUT_MS } from "./table-writer.js";
import { dropOldChunks, timescaleEdition } from "./timescaledb.js";

/** `body` on a connection of its own (the sink's maintenance: retention), closed after. */
async function withConnection<T>(config: PostgresSinkConfig, body: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: config.url, connectionTimeoutMillis: CONNECT_TIMEOUT_MS, application_name: `fabric-sink-${config.name}-maintenance` });
  client.on("error", () => undefined);
  await client.connect();
  try {
    return await body(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * The retention job: drops what is wholly older than retentionDays and returns the names of what it dropped.
 * Natively partitioned tables: their partitions (through the `<prefix>drop_partitions_before` function the sink
 * creates). TimescaleDB's Apache edition (no policies): chunks, with drop_chunks. TimescaleDB's community
 * edition: nothing, its retention policy does it.
 */
export async function runRetention(config: PostgresSinkConfig, specs: readonly TableSpec[], logger: Logger): Promise<string[]> {
  if (config.retentionDays <= 0) return [];
  return withConnection(config, async (client) => {
    const layout = await detectLayout(client);
    if (layout === "timescaledb" && (await timescaleEdition(client)) === "timescale") return [];
    const dropped: string[] = [];
    for (const spec of specs) {
      const table = tableName(config, spec);
      if (layout === "timescaledb") dropped.push(...(await dropOldChunks(client, table, config.retentionDays)));
      else {
        const r = await client.query<{ part: string }>(`SELECT part FROM ${retentionFunction(config)}($1::regclass, now() - make_interval(days => $2)) AS part`, [table, config.retentionDays]);
        dropped.push(...r.rows.map((x) => x.part));
      }
    }
    if (dropped.length > 0) logger.info({ dropped, retentionDays: config.retentionDays, layout }, `retention: dropped old ${layout === "timescaledb" ? "chunks" : "partitions"}`);
    return dropped;
  });
}
