import pg from "pg";
import type { Logger } from "../fabric/core/index.js";
import { copyRows } from "./copy-csv.js";
import { isRowError, SinkError, sqlState } from "./errors.js";
import type { PostgresSinkConfig } from "./options.js";
import { detectLayout, ensureStage, ensureTable, Partitions, stageName, tableName, type TimeLayout } from "./schema.js";
import type { CellValue, TableSpec } from "./table-spec.js";

export const CONNECT_TIMEOUT_MS = 5_000; // 5 s
const UNIQUE_VIOLATION = "23505";

export interface Row {
  row: CellValue[];
  timeMs: number;
}

/** What a batch came to: the rows the merge inserted (or updated), and those the database refused. */
export interface WriteResult {
  inserted: number;
  refused: RefusedRow[];
}

/** A row refused by the database: where it was in the batch and the database's message. */
export interface RefusedRow {
  index: number;
  message: string;
}

/** "no partition of relation … found for row": partitions the sink thought were there were dropped. */
const isMissingPartition = (err: unknown): boolean => sqlState(err) === "23514" && /no partition of relation/.test((err as Error).message);

/**
 * Writes batches of one table on a connection of its own: a transaction that COPYs the batch into the staging
 * table and merges it with one INSERT … SELECT … ON CONFLICT. When a row's content fails the statement, the
 * batch is written again row by row (a savepoint each), and the rows the database refuses are returned with its
 * message; any other failure (connection lost, server shutting down) throws and drops the connection.
 */
export class TableWriter {
  private client: pg.Client | undefined;
  private layout: TimeLayout = "partitioned";
  private readonly table: string;
  readonly partitions: Partitions;

  constructor(
    private readonly config: PostgresSinkConfig,
    private readonly spec: TableSpec,
    private readonly logger: Logger,
  ) {
    this.table = tableName(config, spec);
    this.partitions = new Partitions(this.table, config.partition);
  }

  private async connection(): Promise<pg.Client> {
    if (this.client !== undefined) return this.client;
    const c = new pg.Client({ connectionString: this.config.url, connectionTimeoutMillis: CONNECT_TIMEOUT_MS, application_name: `fabric-sink-${this.config.name}-${this.spec.stream}` });
    // an idle connection's failure arrives as an event: the next write reconnects
    c.on("error", (err) => {
      this.logger.debug({ table: this.table, err: err.message }, "postgres connection failed");
      if (this.client === c) this.client = undefined;
    });
    try {
      await c.connect();
      // messages are acknowledged after COMMIT: a commit must be durable when it returns, whatever the server's default
      if ((await c.query<{ s: string }>("SELECT current_setting('synchronous_commit') AS s")).rows[0]?.s === "off") await c.query("SET synchronous_commit = local");
      this.layout = await detectLayout(c);
      await ensureTable(c, this.config, this.spec, this.layout);
      await ensureStage(c, this.spec);
    } catch (err) {
      await c.end().catch(() => undefined);
      throw err;
    }
    this.logger.info({ table: this.table, layout: this.layout }, "postgres table ready");
    this.client = c;
    return c;
  }

  /**
   * Writes `rows` in one transaction; returns how many the merge inserted (the others already there: duplicates)
   * and the rows the database refused (the others are committed).
   */
  async write(rows: readonly Row[]): Promise<WriteResult> {
    if (rows.length === 0) return { inserted: 0, refused: [] };
    const c = await this.connection();
    try {
      if (this.layout === "partitioned") await this.partitions.ensure(c, rows.map((r) => r.timeMs));
      let inserted = 0;
      await this.inTransaction(c, async () => {
        const cells = rows.map((r) => r.row);
        inserted = this.spec.appendOnly ? await this.copyOrMerge(c, cells) : await this.stageAndMerge(c, cells);
      });
      return { inserted, refused: [] };
    } catch (err) {
      if (isMissingPartition(err)) {
        this.partitions.forget();
        throw new SinkError("FABRIC_ERR_SINK_SCHEMA", `partitions of ${this.table} were dropped meanwhile: creating them again`, { cause: err });
      }
      if (!isRowError(err)) {
        await this.drop(c);
        throw err;
      }
      this.logger.warn({ table: this.table, rows: rows.length, err: (err as Error).message }, "postgres refused the batch: writing it row by row");
      return this.rowByRow(c, rows);
    }
  }

  private async rowByRow(c: pg.Client, rows: readonly Row[]): Promise<WriteResult> {
    const refused: RefusedRow[] = [];
    let inserted = 0;
    await this.inTransaction(c, async () => {
      for (const [index, r] of rows.entries()) {
        await c.query("SAVEPOINT fabric_row");
        try {
          const n = await this.stageAndMerge(c, [r.row], true);
          await c.query("RELEASE SAVEPOINT fabric_row");
          inserted += n;
        } catch (err) {
          if (!isRowError(err) || isMissingPartition(err)) throw err;
          await c.query("ROLLBACK TO SAVEPOINT fabric_row");
          refused.push({ index, message: `${(err as Error).message} (SQLSTATE ${sqlState(err) ?? "?"})` });
        }
      }
    }).catch(async (err: unknown) => {
      if (!isRowError(err)) await this.drop(c);
      throw err;
    });
    return { inserted, refused };
  }

  /**
   * An append-only table's batch: COPYed straight into the table (the database's fastest path); when a row is
   * there already (unique violation: a batch redelivered after a crash), staged and merged instead, which
   * drops the rows already stored. Returns the rows inserted.
   */
  private async copyOrMerge(c: pg.Client, rows: readonly (readonly CellValue[])[]): Promise<number> {
    await c.query("SAVEPOINT fabric_copy");
    try {
      await copyRows(c, this.table, this.spec.columns, rows);
    } catch (err) {
      if (sqlState(err) !== UNIQUE_VIOLATION) throw err;
      await c.query("ROLLBACK TO SAVEPOINT fabric_copy");
      return this.stageAndMerge(c, rows);
    }
    await c.query("RELEASE SAVEPOINT fabric_copy");
    return rows.length;
  }

  /**
   * Returns the rows the merge inserted or updated. The staging table is empty at the start of a transaction
   * (ON COMMIT DELETE ROWS); `reuse`: emptied first, for a second use within one transaction (row by row).
   */
  private async stageAndMerge(c: pg.Client, rows: readonly (readonly CellValue[])[], reuse = false): Promise<number> {
    const stage = stageName(this.spec);
    if (reuse) await c.query(`DELETE FROM ${stage}`);
    await copyRows(c, stage, this.spec.columns, rows);
    return (await c.query(this.spec.mergeSql(this.table, stage))).rowCount ?? 0;
  }

  private async inTransaction(c: pg.Client, body: () => Promise<void>): Promise<void> {
    await c.query("BEGIN");
    try {
      await body();
      await c.query("COMMIT");
    } catch (err) {
      await c.query("ROLLBACK").catch(() => undefined);
      throw err;
    }
  }

  private async drop(c: pg.Client): Promise<void> {
    if (this.client === c) this.client = undefined;
    await c.end().catch(() => undefined);
  }

  async close(): Promise<void> {
    if (this.client !== undefined) await this.drop(this.client);
  }
}
