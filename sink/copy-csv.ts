import { pipeline } from "node:stream/promises";
import { Readable } from "node:stream";
import type pg from "pg";
import { from as copyFrom } from "pg-copy-streams";
import type { CellValue, Column } from "./table-spec.js";

/** One CSV field as COPY … (FORMAT csv) reads it: NULL unquoted and empty, everything else quoted. */
function csvField(v: CellValue): string {
  if (v === null) return "";
  if (typeof v === "number") return String(v);
  if (typeof v === "boolean") return v ? "t" : "f";
  return `"${v.replace(/"/g, '""')}"`;
}

export function csvRows(rows: readonly (readonly CellValue[])[]): string {
  let out = "";
  for (const r of rows) out += `${r.map(csvField).join(",")}\n`;
  return out;
}

/** COPY `rows` into `table` (pg-copy-streams), in chunks of rows so a large batch is not one string. */
export async function copyRows(client: pg.Client, table: string, columns: readonly Column[], rows: readonly (readonly CellValue[])[]): Promise<void> {
  const stream = client.query(copyFrom(`COPY ${table} (${columns.map((c) => c.name).join(", ")}) FROM STDIN WITH (FORMAT csv)`));
  const CHUNK = 256;
  function* chunks(): Generator<string> {
    for (let i = 0; i < rows.length; i += CHUNK) yield csvRows(rows.slice(i, i + CHUNK));
  }
  await pipeline(Readable.from(chunks()), stream);
}
