import type pg from "pg";
import type { PostgresSinkConfig } from "./options.js";
import type { TableSpec } from "./table-spec.js";

/**
 * TimescaleDB's edition, from its `timescaledb.license` setting: `timescale` (the community edition) has
 * compression and policies (background jobs); `apache` (the Apache-licensed build Debian packages) has
 * hypertables and drop_chunks, and refuses compression and every add_*_policy.
 */
export type TimescaleEdition = "timescale" | "apache";

export async function timescaleEdition(client: pg.Client): Promise<TimescaleEdition> {
  const r = await client.query<{ license: string | null }>("SELECT current_setting('timescaledb.license', true) AS license");
  return r.rows[0]?.license === "timescale" ? "timescale" : "apache";
}

/** Why compressAfterDays is not applied on `edition`, or undefined when it is (or is 0). */
export function compressionUnavailable(config: Pick<PostgresSinkConfig, "compressAfterDays">, edition: TimescaleEdition): string | undefined {
  return config.compressAfterDays > 0 && edition === "apache" ? "compressAfterDays needs TimescaleDB's community edition (timescaledb.license = timescale); this database has the apache edition: chunks are not compressed" : undefined;
}

/**
 * Makes `table` (created, empty or not, by CREATE TABLE IF NOT EXISTS) a hypertable with chunks of one
 * config.partition (a month is 30 days to TimescaleDB); on the community edition, with compression (segment by
 * spec.segmentBy) after compressAfterDays and a retention policy of retentionDays. The Apache edition has
 * neither: the sink's retention job drops old chunks itself (dropOldChunks). Idempotent: a hypertable stays as
 * it is, compression is enabled once (changing it fails once chunks are compressed), policies are added if missing.
 */
export async function ensureHypertable(client: pg.Client, config: PostgresSinkConfig, spec: TableSpec, table: string): Promise<void> {
  await client.query(`SELECT create_hypertable('${table}', '${spec.timeColumn}', chunk_time_interval => interval '1 ${config.partition}', if_not_exists => true)`);
  if ((await timescaleEdition(client)) === "apache") return;
  if (config.compressAfterDays > 0) {
    const r = await client.query<{ enabled: boolean }>(
      "SELECT compression_enabled AS enabled FROM timescaledb_information.hypertables WHERE format('%I.%I', hypertable_schema, hypertable_name)::regclass = $1::regclass",
      [table],
    );
    if (r.rows[0]?.enabled !== true) await client.query(`ALTER TABLE ${table} SET (timescaledb.compress, timescaledb.compress_segmentby = '${spec.segmentBy.join(",")}')`);
    await client.query(`SELECT add_compression_policy('${table}', interval '${config.compressAfterDays} days', if_not_exists => true)`);
  }
  if (config.retentionDays > 0) await client.query(`SELECT add_retention_policy('${table}', interval '${config.retentionDays} days', if_not_exists => true)`);
}

/** Drops the chunks of hypertable `table` wholly older than `days` days; returns their names (schema-qualified). */
export async function dropOldChunks(client: pg.Client, table: string, days: number): Promise<string[]> {
  const r = await client.query<{ chunk: string }>("SELECT drop_chunks($1::regclass, older_than => now() - make_interval(days => $2)) AS chunk", [table, days]);
  return r.rows.map((x) => x.chunk);
}
