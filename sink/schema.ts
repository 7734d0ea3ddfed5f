import type pg from "pg";
import type { PostgresSinkConfig } from "./options.js";
import type { TableSpec } from "./table-spec.js";
import { ensureHypertable } from "./timescaledb.js";

/** How a table is laid out in time: TimescaleDB hypertable, or native range partitions the sink creates. */
export type TimeLayout = "timescaledb" | "partitioned";

export const tableName = (config: Pick<PostgresSinkConfig, "tablePrefix">, spec: TableSpec): string => `${config.tablePrefix}${spec.stream}`;
export const stageName = (spec: TableSpec): string => `fabric_sink_stage_${spec.stream}`;
export const positionsName = (config: Pick<PostgresSinkConfig, "tablePrefix">): string => `${config.tablePrefix}sink_positions`;
export const retentionFunction = (config: Pick<PostgresSinkConfig, "tablePrefix">): string => `${config.tablePrefix}drop_partitions_before`;

/** TimescaleDB is used when its extension is installed in the database (CREATE EXTENSION timescaledb). */
export async function detectLayout(client: pg.Client): Promise<TimeLayout> {
  const r = await client.query("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'");
  return r.rowCount === 0 ? "partitioned" : "timescaledb";
}

/**
 * Drops the partitions of `parent` whose upper bound is at or before `cutoff`, returning their names: the
 * retention job of natively partitioned tables (`SELECT * FROM fabric_drop_partitions_before('fabric_telemetry',
 * now() - interval '30 days')` by hand, or the sink's --retention-days).
 */
function retentionFunctionSql(name: string): string {
  return `CREATE OR REPLACE FUNCTION ${name}(parent regclass, cutoff timestamptz) RETURNS SETOF text LANGUAGE plpgsql AS $fn$
DECLARE r record;
BEGIN
  FOR r IN SELECT c.oid::regclass::text AS part, pg_get_expr(c.relpartbound, c.oid) AS bound
           FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = parent LOOP
    IF r.bound LIKE 'FOR VALUES FROM%' AND substring(r.bound FROM 'TO \\(''([^'']+)''\\)')::timestamptz <= cutoff THEN
      EXECUTE format('DROP TABLE %s', r.part);
      RETURN NEXT r.part;
    END IF;
  END LOOP;
END
$fn$`;
}

/**
 * Creates (idempotently, under an advisory lock so two sinks starting at once do not race) the table of `spec`,
 * as a hypertable (ensureHypertable: compression and retention policies where the edition has them) or as a
 * range-partitioned table with the retention function, and its indexes. The unique key includes the time
 * column, as both a partitioned table's and a hypertable's must.
 */
export async function ensureTable(client: pg.Client, config: PostgresSinkConfig, spec: TableSpec, layout: TimeLayout): Promise<void> {
  const table = tableName(config, spec);
  const columns = spec.columns.map((c) => `${c.name} ${c.type}`).join(", ");
  const unique = `CONSTRAINT ${table}_key UNIQUE (${spec.uniqueKey.join(", ")})`;
  await client.query("BEGIN");
  try {
    await client.query("SELECT pg_advisory_xact_lock(hashtext($1))", [`fabric-sink:${table}`]);
    if (layout === "partitioned") {
      await client.query(`CREATE TABLE IF NOT EXISTS ${table} (${columns}, ${unique}) PARTITION BY RANGE (${spec.timeColumn})`);
      await client.query(retentionFunctionSql(retentionFunction(config)));
    } else {
      await client.query(`CREATE TABLE IF NOT EXISTS ${table} (${columns}, ${unique})`);
      await ensureHypertable(client, config, spec, table);
    }
    for (const [i, cols] of spec.indexes.entries()) await client.query(`CREATE INDEX IF NOT EXISTS ${table}_idx${i} ON ${table} (${cols.join(", ")})`);
    await client.query("COMMIT");
  } catch (err) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw err;
  }
}

/**
 * The positions table: per sink and stream, the last stream sequence written. It is updated in the transaction
 * that writes the rows, so the table and the position never disagree; a sink (re)starting reads the stream from
 * the message after it.
 */
export async function ensurePositions(client: pg.Client, config: PostgresSinkConfig): Promise<void> {
  const table = positionsName(config);
  await client.query("BEGIN");
  try {
    await client.query("SELECT pg_advisory_xact_lock(hashtext($1))", [`fabric-sink:${table}`]);
    await client.query(`CREATE TABLE IF NOT EXISTS ${table} (sink text NOT NULL, stream text NOT NULL, seq bigint NOT NULL, updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (sink, stream))`);
    await client.query("COMMIT");
  } catch (err) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw err;
  }
}

/** The staging table of a connection: COPY goes there, then one INSERT … SELECT merges it into the table. */
export async function ensureStage(client: pg.Client, spec: TableSpec): Promise<void> {
  // emptied at every commit (cheaper than a TRUNCATE per batch, which gives the table new files each time)
  await client.query(`CREATE TEMP TABLE IF NOT EXISTS ${stageName(spec)} (${spec.columns.map((c) => `${c.name} ${c.type.replace(" NOT NULL", "")}`).join(", ")}) ON COMMIT DELETE ROWS`);
}

/** The partition holding `ms`: its name suffix and bounds, by UTC day or month. */
export function partitionOf(ms: number, interval: "day" | "month"): { suffix: string; from: string; to: string } {
  const d = new Date(ms);
  const y = d.getUTCFullYear();
  const m = d.getUTCMonth();
  const from = interval === "day" ? new Date(Date.UTC(y, m, d.getUTCDate())) : new Date(Date.UTC(y, m, 1));
  const to = interval === "day" ? new Date(Date.UTC(y, m, d.getUTCDate() + 1)) : new Date(Date.UTC(y, m + 1, 1));
  const suffix = from.toISOString().slice(0, interval === "day" ? 10 : 7).replace(/-/g, "");
  return { suffix, from: from.toISOString(), to: to.toISOString() };
}

/**
 * Creates the partitions rows need before they are written (each once per process; forget() after partitions
 * were dropped). A partition is created in a transaction of its own, before the batch's.
 */
export class Partitions {
  private readonly known = new Set<string>();
  /** The last partition made sure of, in ms: most rows of a batch fall in it, and need no date arithmetic. */
  private lastFrom = 0;
  private lastTo = 0;

  constructor(
    private readonly table: string,
    private readonly interval: "day" | "month",
  ) {}

  async ensure(client: pg.Client, rows: Iterable<{ timeMs: number }>): Promise<void> {
    const wanted = new Map<string, { from: string; to: string }>();
    for (const { timeMs } of rows) {
      if (timeMs >= this.lastFrom && timeMs < this.lastTo) continue;
      const p = partitionOf(timeMs, this.interval);
      if (!this.known.has(p.suffix)) wanted.set(p.suffix, p);
      else [this.lastFrom, this.lastTo] = [Date.parse(p.from), Date.parse(p.to)];
    }
    for (const [suffix, p] of wanted) {
      await client.query(`CREATE TABLE IF NOT EXISTS ${this.table}_p${suffix} PARTITION OF ${this.table} FOR VALUES FROM ('${p.from}') TO ('${p.to}')`).catch((err: unknown) => {
        // created by another sink meanwhile (a concurrent CREATE … IF NOT EXISTS can still collide)
        if ((err as { code?: string }).code !== "42P07" && (err as { code?: string }).code !== "23505") throw err;
      });
      this.known.add(suffix);
    }
  }

  forget(): void {
    this.known.clear();
    this.lastFrom = this.lastTo = 0;
  }
}
