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
  return v.includes('"') ? `"${v.replace(/"/g, '""')}"` : `"${v}"`;
}

/** One row as a CSV line (with its newline). */
export function csvLine(cells: readonly CellValue[]): string {
  let out = "";
  for (let i = 0; i < cells.length; i++) out += i === 0 ? csvField(cells[i] ?? null) : `,${csvField(cells[i] ?? null)}`;
  return `${out}\n`;
}

/** Lines per chunk written to the COPY stream: a large batch is not one string. */
const CHUNK = 512;

/** COPY CSV `lines` (csvLine's) into `table` (pg-copy-streams). */
export async function copyLines(client: pg.Client, table: string, columns: readonly Column[], lines: readonly string[]): Promise<void> {
  const stream = client.query(copyFrom(`COPY ${table} (${columns.map((c) => c.name).join(", ")}) FROM STDIN WITH (FORMAT csv)`));
  function* chunks(): Generator<string> {
    let chunk = "";
    let n = 0;
    for (const line of lines) {
      chunk += line;
      if (++n === CHUNK) {
        yield chunk;
        chunk = "";
        n = 0;
      }
    }
    if (chunk !== "") yield chunk;
  }
  await pipeline(Readable.from(chunks()), stream);
}
