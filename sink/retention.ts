import pg from "pg";
import type { Logger } from "../fabric/core/index.js";
import type { PostgresSinkConfig } from "./options.js";
import { detectLayout, retentionFunction, tableName } from "./schema.js";
import type { TableSpec } from "./table-spec.js";
import { CONNECT_TIMEOUT_MS } from "./table-writer.js";

/**
 * The retention job of natively partitioned tables: drops every partition wholly older than retentionDays
 * (through the `<prefix>drop_partitions_before` function the sink creates) and returns the dropped partitions'
 * names. With TimescaleDB, its retention policy does this and the job does nothing.
 */
export async function runRetention(config: PostgresSinkConfig, specs: readonly TableSpec[], logger: Logger): Promise<string[]> {
  if (config.retentionDays <= 0) return [];
  const client = new pg.Client({ connectionString: config.url, connectionTimeoutMillis: CONNECT_TIMEOUT_MS });
  client.on("error", () => undefined);
  await client.connect();
  try {
    if ((await detectLayout(client)) === "timescaledb") return [];
    const dropped: string[] = [];
    for (const spec of specs) {
      const r = await client.query<{ part: string }>(`SELECT part FROM ${retentionFunction(config)}($1::regclass, now() - make_interval(days => $2)) AS part`, [tableName(config, spec), config.retentionDays]);
      dropped.push(...r.rows.map((x) => x.part));
    }
    if (dropped.length > 0) logger.info({ dropped, retentionDays: config.retentionDays }, "retention: dropped old partitions");
    return dropped;
  } finally {
    await client.end().catch(() => undefined);
  }
}
