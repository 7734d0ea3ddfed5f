/**
 * NATS's deterministic subject-token partitioning, computed here: `{{partition(n, t1, t2, …)}}` in a subject
 * mapping hashes the chosen tokens, concatenated without a separator, with 32-bit FNV-1a and takes the
 * remainder by n. The same function here means a window's partition of a key is the partition a server mapping
 * would give the subject (checked against a real server in the tests), so a deployment can later move the
 * partitioning into an ingest mapping without moving any key.
 */
const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

export function fnv1a32(bytes: Uint8Array): number {
  let h = FNV_OFFSET;
  for (const b of bytes) h = Math.imul(h ^ b, FNV_PRIME) >>> 0;
  return h;
}

/** The partition (0 … n-1) of the given tokens. */
export function partitionOf(tokens: readonly string[], n: number): number {
  if (n === 1) return 0;
  const joined = tokens.join("");
  let h = FNV_OFFSET;
  let ascii = true;
  for (let i = 0; i < joined.length; i++) {
    const c = joined.charCodeAt(i);
    if (c > 0x7f) {
      ascii = false;
      break;
    }
    h = Math.imul(h ^ c, FNV_PRIME) >>> 0;
  }
  if (!ascii) h = fnv1a32(Buffer.from(joined, "utf8"));
  return h % n;
}
