import type { JetStreamManager } from "@nats-io/jetstream";

/**
 * The keys of a KV bucket under a filter, from the stream's per-subject counts: one API request, where
 * `kv.keys()` creates a consumer each time (a member listing them every second, or a status poll, would churn
 * consumers until the account's limit). Deleted keys may be listed (their markers): `get` tells.
 */
export async function kvKeys(jsm: JetStreamManager, bucket: string, filter: string): Promise<string[]> {
  const prefix = `$KV.${bucket}.`;
  const info = await jsm.streams.info(`KV_${bucket}`, { subjects_filter: `${prefix}${filter}` });
  return Object.keys(info.state.subjects ?? {}).map((s) => s.slice(prefix.length));
}
