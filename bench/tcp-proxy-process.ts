// The test harness's TCP proxy (test/harness/tcp-proxy.ts) in a process of its own, so that its timers (the
// delay it adds) are not held up by a benchmark's load generator. Run: `node --import tsx bench/tcp-proxy-process.ts
// <target port> [delay ms]`. Prints `{"port":…}` on stdout once listening, then reads commands on stdin, one a
// line, and answers each with one JSON line `{"ok":true,"at":<Date.now() when applied>,…}`:
//   cut | cut silent | restore | delay <ms> | target <port> | stats (adds links, bytes, eventLoop {p99, max} ms) | quit
import { monitorEventLoopDelay } from "node:perf_hooks";
import { createInterface } from "node:readline";
import { startTcpProxy } from "../test/harness/tcp-proxy.js";

const target = Number(process.argv[2]);
const delay = Number(process.argv[3] ?? 0);
if (!Number.isInteger(target) || target <= 0 || !Number.isFinite(delay)) {
  console.error("usage: tcp-proxy-process.ts <target port> [delay ms]");
  process.exit(2);
}
const proxy = await startTcpProxy(target);
proxy.delayMs = delay;
const eld = monitorEventLoopDelay({ resolution: 5 });
eld.enable();
const reply = (o: Record<string, unknown>): void => void process.stdout.write(`${JSON.stringify({ ...o, at: Date.now() })}\n`);
reply({ port: proxy.port });

const quit = async (): Promise<void> => {
  await proxy.close();
  process.exit(0);
};
process.on("SIGTERM", () => void quit());
const lines = createInterface({ input: process.stdin });
lines.on("close", () => void quit());
lines.on("line", (line) => {
  const [cmd, arg] = line.trim().split(/\s+/);
  switch (cmd) {
    case "cut":
      proxy.cut({ silent: arg === "silent" });
      return reply({ ok: true, cmd: line });
    case "restore":
      proxy.restore();
      return reply({ ok: true, cmd: line });
    case "delay":
      proxy.delayMs = Number(arg);
      return reply({ ok: true, cmd: line });
    case "target":
      proxy.target = Number(arg);
      return reply({ ok: true, cmd: line });
    case "stats":
      reply({ ok: true, cmd: line, links: proxy.links(), bytes: proxy.bytes(), eventLoop: { p99: eld.percentile(99) / 1e6, max: eld.max / 1e6 } });
      eld.reset();
      return;
    case "quit":
      reply({ ok: true, cmd: line });
      return void quit();
    default:
      return reply({ ok: false, cmd: line, error: "unknown command" });
  }
});
