import type { BenchResult } from "./run.js";

const n = (x: number, d = 0): string => x.toLocaleString("en-US", { maximumFractionDigits: d, minimumFractionDigits: d });

/** One table of runs (a `compare` has one row per path). */
export function renderBench(results: readonly BenchResult[]): string {
  const head = "| path | conns | offered/s | stored/s | stored / sent | p50 / p90 / p99 / max ms | wire bytes / reading | CPU ms per 1 000 (fabric processes) | CPU ms per connection |";
  const rows = results.map((r) => {
    const l = r.latencyMs;
    const cpu = r.cpu.map((c) => `${c.what} ${n(c.msPer1000, 1)}`).join(", ") || "not local";
    const perConn = r.cpu.length === 0 ? "-" : n(r.cpu.reduce((a, c) => a + c.msPerConnection, 0), 1);
    const name = `${r.path}${r.path === "mqtt" ? ` QoS ${r.qos}` : ""}${r.compression !== "none" ? ` ${r.compression}` : ""}`;
    return `| ${name} | ${r.connections} | ${n(r.offeredPerSecond)} | ${n(r.storedPerSecond)} | ${n(r.stored)} / ${n(r.sent)} | ${l === undefined ? "-" : `${n(l.p50, 1)} / ${n(l.p90, 1)} / ${n(l.p99, 1)} / ${n(l.max, 1)}`} | ${n(r.wireBytesPerReading)} | ${cpu} | ${perConn} |`;
  });
  const errors = results.flatMap((r) => r.errors.map((e) => `${r.path}: ${e}`));
  return [head, "|---|---|---|---|---|---|---|---|---|", ...rows, ...(errors.length === 0 ? [] : ["", "errors:", ...errors])].join("\n");
}

/** A self-contained HTML page (inline SVG, no script, no CDN) of p99 latency and deliveries per second. */
export function benchChart(results: readonly BenchResult[]): string {
  const W = 760;
  const H = 240;
  const colours = ["#1f77b4", "#d62728", "#2ca02c"];
  const maxT = Math.max(1, ...results.flatMap((r) => r.timeline.map((p) => p.second)));
  const maxL = Math.max(1, ...results.flatMap((r) => r.timeline.map((p) => p.p99)));
  const x = (s: number): number => 40 + (s / maxT) * (W - 60);
  const y = (v: number): number => H - 30 - (v / maxL) * (H - 50);
  const lines = results.map((r, i) => `<polyline fill="none" stroke="${colours[i % 3] ?? "#000"}" stroke-width="2" points="${r.timeline.map((p) => `${x(p.second).toFixed(1)},${y(p.p99).toFixed(1)}`).join(" ")}"/>`);
  const legend = results.map((r, i) => `<text x="${50 + i * 150}" y="16" fill="${colours[i % 3] ?? "#000"}">${r.path} p99</text>`);
  return `<!doctype html><meta charset="utf-8"><title>fabric bench</title>
<h1>fabric bench: p99 latency (publish → consumer) per second</h1>
<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">
<line x1="40" y1="${H - 30}" x2="${W - 20}" y2="${H - 30}" stroke="#888"/><line x1="40" y1="20" x2="40" y2="${H - 30}" stroke="#888"/>
<text x="4" y="${y(maxL) + 4}">${maxL.toFixed(0)} ms</text><text x="${W - 60}" y="${H - 10}">${maxT} s</text>
${lines.join("\n")}
${legend.join("\n")}
</svg>
<pre>${renderBench(results).replaceAll("<", "&lt;")}</pre>
`;
}
