import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";

/** An encoded nkey seed (operator, account or user) anywhere in a text. */
export const SEED_PATTERN = /\bS[OAUN][A-Z2-7]{56}\b/;

/** Every file and directory below `dir` with its permission bits. */
export function modesBelow(dir: string): { path: string; mode: number; dir: boolean }[] {
  const out: { path: string; mode: number; dir: boolean }[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    const st = statSync(path);
    out.push({ path, mode: st.mode & 0o777, dir: st.isDirectory() });
    if (st.isDirectory()) out.push(...modesBelow(path));
  }
  return out;
}
