// Token exchange (issue 14): identity provider tokens for fabric credentials over NATS, against plain issuance
// (what `fabric-id issue` does) in the same run. Real hub, real IdP keys (jose), real JWKS endpoint.
import type { NatsConnection } from "@nats-io/transport-node";
import { createKeyPair, exchangeToken, issueUser, putProvider } from "../identity/index.js";
import { connectAs, startTestHub, startTestIdp, type Harness } from "../test/harness/index.js";
import { fmt, percentile } from "./lib.js";

export const EXCHANGE_COUNT = 2_000;
export const EXCHANGE_CONCURRENCY = [1, 16] as const;

export interface ExchangeRow {
  what: string;
  concurrency: number;
  count: number;
  perSecond: number;
  p50: number;
  p99: number;
  max: number;
}

/** Runs `op` `count` times with `concurrency` in flight; per-operation latency in ms. */
async function measure(what: string, count: number, concurrency: number, op: (i: number) => unknown): Promise<ExchangeRow> {
  const lat: number[] = [];
  let next = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let i = next++; i < count; i = next++) {
        const t = performance.now();
        await op(i);
        lat.push(performance.now() - t);
      }
    }),
  );
  const secs = (performance.now() - start) / 1000;
  return { what, concurrency, count, perSecond: count / secs, p50: percentile(lat, 50), p99: percentile(lat, 99), max: Math.max(...lat) };
}

export async function benchExchange(h: Harness): Promise<ExchangeRow[]> {
  const hub = await startTestHub(h, { windows: false, sinks: false });
  const idp = await startTestIdp(h);
  await hub.keystore.withLock(() =>
    putProvider(hub.keystore, { name: "corp", issuer: idp.issuer, jwksUri: idp.jwksUri, audiences: ["fabric"], rules: [{ when: { groups: "svc" }, role: "service", name: "{name}" }] }),
  );
  const creds = issueUser(hub.keystore, { account: "fleet", role: "service", name: "bench-client" }).creds ?? "";
  const nc: NatsConnection = await connectAs(hub.urls, creds);
  h.defer(() => nc.close());
  // tokens signed up front (an IdP's work, not the fabric's)
  const tokens = await Promise.all(Array.from({ length: EXCHANGE_COUNT }, (_, i) => idp.token({ sub: `s-${i}`, aud: "fabric", groups: ["svc"], name: `svc-${i}` })));
  const keys = Array.from({ length: EXCHANGE_COUNT }, () => createKeyPair("user"));
  await exchangeToken(nc, tokens[0] ?? "", keys[0] ?? createKeyPair("user")); // warm-up: the JWKS fetched once
  const rows: ExchangeRow[] = [];
  for (const c of EXCHANGE_CONCURRENCY) {
    rows.push(
      await measure("`fabric-id issue` (issueUser under the keystore lock, in process: the anchor)", EXCHANGE_COUNT, c, (i) =>
        hub.keystore.withLock(() => issueUser(hub.keystore, { account: "fleet", role: "service", name: `anchor-${c}-${i}`, publicKey: keys[i]?.publicKey })),
      ),
    );
    rows.push(
      await measure("token exchange over NATS (nonce, proof, IdP token verified, mapped, issued)", EXCHANGE_COUNT, c, (i) =>
        exchangeToken(nc, tokens[i] ?? "", keys[i] ?? createKeyPair("user")),
      ),
    );
  }
  return rows;
}

export function exchangeMarkdown(rows: readonly ExchangeRow[]): string {
  const lines = ["| path | in flight | count | per second | p50 / p99 / max (ms) | vs anchor |", "|---|---|---|---|---|---|"];
  for (const r of rows) {
    const anchor = rows.find((x) => x.concurrency === r.concurrency && x.what.startsWith("`fabric-id issue`"));
    lines.push(`| ${r.what} | ${r.concurrency} | ${fmt(r.count)} | ${fmt(r.perSecond)} | ${fmt(r.p50, 2)} / ${fmt(r.p99, 2)} / ${fmt(r.max, 2)} | ${anchor === undefined || anchor === r ? "" : `${fmt(r.perSecond / anchor.perSecond, 2)}× the rate`} |`);
  }
  return lines.join("\n");
}
