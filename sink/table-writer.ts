import pg from "pg";
import type { Logger } from "../fabric/core/index.js";
import { copyLines } from "./copy-csv.js";
import { isRowError, SinkError, sqlState } from "./errors.js";
import type { PostgresSinkConfig } from "./options.js";
import { detectLayout, ensurePositions, ensureStage, ensureTable, Partitions, positionsName, stageName, tableName, type TimeLayout } from "./schema.js";
import type { Row, TableSpec } from "./table-spec.js";
import { compressionUnavailable, timescaleEdition } from "./timescaledb.js";

export const CONNECT_TIMEOUT_MS = 5_000; // 5 s

/** The sink configs whose TimescaleDB edition was checked (warnUnsupported). */
const warned = new WeakSet<PostgresSinkConfig>();
const UNIQUE_VIOLATION = "23505";

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
 * Writes batches of one table on a connection of its own, which holds the sink's claim on the table: a session
 * advisory lock per sink and stream, so one process writes while others running the same sink stand by (the
 * lock goes with the connection: a process that dies or loses the database gives it up). A batch is one
 * transaction: the rows COPYed in (append-only tables) or staged and merged with INSERT … SELECT … ON CONFLICT,
 * and the sink's position (the last stream sequence of the batch) in the positions table. When a row's content
 * fails the statement, the batch is written again row by row (a savepoint each), and the rows the database
 * refuses are returned with its message. Any other failure (connection lost, server shutting down) drops the
 * connection and the claim with it: the sink claims again and reads on from the position the database has.
 */
export class TableWriter {
  private client: pg.Client | undefined;
  private layout: TimeLayout = "partitioned";
  private readonly table: string;
  private readonly positions: string;
  readonly partitions: Partitions;

  constructor(
    private readonly config: PostgresSinkConfig,
    private readonly spec: TableSpec,
    private readonly logger: Logger,
    /** Called when the connection holding the claim fails while it is idle (not when drop() or close() ends it). */
    private readonly onLost: (why: string) => void,
  ) {
    this.table = tableName(config, spec);
    this.positions = positionsName(config);
    this.partitions = new Partitions(this.table, config.partition);
  }

  /** True while this writer holds the claim (its connection is up). */
  get claimed(): boolean {
    return this.client !== undefined;
  }

  /**
   * Connects, creates what is missing (table, positions, staging table) and takes the sink's lock for this
   * stream; returns the position written last (undefined: nothing written by this sink yet). Throws
   * FABRIC_ERR_SINK_STANDBY when another process holds the lock.
   */
  async claim(): Promise<number | undefined> {
    // claimed already (the consumer is made again): the position is read on the connection holding the lock
    if (this.client !== undefined) return this.readPosition(this.client);
    this.partitions.forget();
    const c = new pg.Client({ connectionString: this.config.url, connectionTimeoutMillis: CONNECT_TIMEOUT_MS, application_name: `fabric-sink-${this.config.name}-${this.spec.stream}` });
    // an idle connection's failure arrives as an event: the claim is gone with it
    const lost = (why: string): void => {
      if (this.client !== c) return;
      this.client = undefined;
      this.logger.debug({ table: this.table, err: why }, "postgres connection lost");
      this.onLost(why);
    };
    c.on("error", (err) => lost(err.message));
    c.on("end", () => lost("the connection ended"));
    let position: number | undefined;
    try {
      await c.connect();
      // the position is written with the rows: a commit must be durable when it returns, whatever the server's default
      if ((await c.query<{ s: string }>("SELECT current_setting('synchronous_commit') AS s")).rows[0]?.s === "off") await c.query("SET synchronous_commit = local");
      const locked = await c.query<{ ok: boolean }>("SELECT pg_try_advisory_lock(hashtext($1)) AS ok", [this.lockKey()]);
      if (locked.rows[0]?.ok !== true) throw new SinkError("FABRIC_ERR_SINK_STANDBY", `another process runs sink ${this.config.name} into ${this.table}: standing by`);
      this.layout = await detectLayout(c);
      if (this.layout === "timescaledb") await this.warnUnsupported(c);
      await ensureTable(c, this.config, this.spec, this.layout);
      await ensurePositions(c, this.config);
      await ensureStage(c, this.spec);
      position = await this.readPosition(c);
    } catch (err) {
      await c.end().catch(() => undefined);
      throw err;
    }
    this.logger.info({ table: this.table, layout: this.layout, position }, "postgres table claimed");
    this.client = c;
    return position;
  }

  /** Once per sink start (its streams share one config): what the database's TimescaleDB edition cannot do. */
  private async warnUnsupported(c: pg.Client): Promise<void> {
    if (warned.has(this.config)) return;
    warned.add(this.config);
    const edition = await timescaleEdition(c);
    const why = compressionUnavailable(this.config, edition);
    if (why !== undefined) this.logger.warn({ edition, compressAfterDays: this.config.compressAfterDays }, `timescaledb: ${why}`);
  }

  private async readPosition(c: pg.Client): Promise<number | undefined> {
    const r = await c.query<{ seq: string }>(`SELECT seq FROM ${this.positions} WHERE sink = $1 AND stream = $2`, [this.config.name, this.spec.stream]);
    return r.rows[0] === undefined ? undefined : Number(r.rows[0].seq);
  }

  private lockKey(): string {
    return `fabric-sink:${this.config.name}:${this.positions}:${this.spec.stream}`;
  }

  /**
   * Writes `rows` and the position `lastSeq` in one transaction, calling `beforeCommit` with the rows the
   * database refused before COMMIT (its failure rolls the batch back); returns how many the merge inserted (the
   * others already there: duplicates) and the rows refused (the others are committed). Throws
   * FABRIC_ERR_SINK_CLAIM_LOST when the connection, and with it the claim, is gone: nothing of the batch is
   * known to be written but what the positions table says.
   */
  async write(rows: readonly Row[], lastSeq: number, beforeCommit: (refused: readonly RefusedRow[]) => Promise<void>): Promise<WriteResult> {
    const c = this.client;
    if (c === undefined) throw new SinkError("FABRIC_ERR_SINK_CLAIM_LOST", `the connection to postgres for ${this.table} is gone`);
    try {
      if (this.layout === "partitioned") await this.partitions.ensure(c, rows);
      let inserted = 0;
      await this.inTransaction(c, async () => {
        const lines = rows.map((r) => r.line);
        if (lines.length > 0) inserted = this.spec.appendOnly ? await this.copyOrMerge(c, lines) : await this.stageAndMerge(c, lines);
        await this.savePosition(c, lastSeq);
        await beforeCommit([]);
      });
      return { inserted, refused: [] };
    } catch (err) {
      if (isMissingPartition(err)) {
        this.partitions.forget();
        throw new SinkError("FABRIC_ERR_SINK_SCHEMA", `partitions of ${this.table} were dropped meanwhile: creating them again`, { cause: err });
      }
      if (!isRowError(err)) {
        await this.drop(c);
        throw new SinkError("FABRIC_ERR_SINK_CLAIM_LOST", `postgres failed writing ${this.table}: ${(err as Error).message}`, { cause: err });
      }
      this.logger.warn({ table: this.table, rows: rows.length, err: (err as Error).message }, "postgres refused the batch: writing it row by row");
      return this.rowByRow(c, rows, lastSeq, beforeCommit);
    }
  }

  private async savePosition(c: pg.Client, seq: number): Promise<void> {
    await c.query(
      `INSERT INTO ${this.positions} AS p (sink, stream, seq) VALUES ($1, $2, $3) ON CONFLICT (sink, stream) DO UPDATE SET seq = GREATEST(p.seq, EXCLUDED.seq), updated_at = now()`,
      [this.config.name, this.spec.stream, seq],
    );
  }

  private async rowByRow(c: pg.Client, rows: readonly Row[], lastSeq: number, beforeCommit: (refused: readonly RefusedRow[]) => Promise<void>): Promise<WriteResult> {
    const refused: RefusedRow[] = [];
    let inserted = 0;
    await this.inTransaction(c, async () => {
      for (const [index, r] of rows.entries()) {
        await c.query("SAVEPOINT fabric_row");
        try {
          const n = await this.stageAndMerge(c, [r.line], true);
          await c.query("RELEASE SAVEPOINT fabric_row");
          inserted += n;
        } catch (err) {
          if (!isRowError(err) || isMissingPartition(err)) throw err;
          await c.query("ROLLBACK TO SAVEPOINT fabric_row");
          refused.push({ index, message: `${(err as Error).message} (SQLSTATE ${sqlState(err) ?? "?"})` });
        }
      }
      await this.savePosition(c, lastSeq);
      await beforeCommit(refused);
    }).catch(async (err: unknown) => {
      if (isRowError(err) && !isMissingPartition(err)) throw err;
      await this.drop(c);
      throw new SinkError("FABRIC_ERR_SINK_CLAIM_LOST", `postgres failed writing ${this.table} row by row: ${(err as Error).message}`, { cause: err });
    });
    return { inserted, refused };
  }

  /**
   * An append-only table's batch: COPYed straight into the table (the database's fastest path); when a row is
   * there already (unique violation: a batch redelivered after a crash), staged and merged instead, which
   * drops the rows already stored. Returns the rows inserted.
   */
  private async copyOrMerge(c: pg.Client, lines: readonly string[]): Promise<number> {
    await c.query("SAVEPOINT fabric_copy");
    try {
      await copyLines(c, this.table, this.spec.columns, lines);
    } catch (err) {
      if (sqlState(err) !== UNIQUE_VIOLATION) throw err;
      await c.query("ROLLBACK TO SAVEPOINT fabric_copy");
      return this.stageAndMerge(c, lines);
    }
    await c.query("RELEASE SAVEPOINT fabric_copy");
    return lines.length;
  }

  /**
   * Returns the rows the merge inserted or updated. The staging table is empty at the start of a transaction
   * (ON COMMIT DELETE ROWS); `reuse`: emptied first, for a second use within one transaction (row by row).
   */
  private async stageAndMerge(c: pg.Client, lines: readonly string[], reuse = false): Promise<number> {
    const stage = stageName(this.spec);
    if (reuse) await c.query(`DELETE FROM ${stage}`);
    await copyLines(c, stage, this.spec.columns, lines);
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
