import { afterAll, describe, expect, it } from "vitest";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { jetstream } from "@nats-io/jetstream";
import { pollUntil } from "../../fabric/core/index.js";
import { connectAs, Harness, runCli, startCli } from "../harness/index.js";

const h = new Harness();
afterAll(() => h.dispose());

describe("fabric windows and the workers of fabric up", () => {
  it("a definition added from YAML is run by the hub and its results land in AGGREGATES", async () => {
    const home = h.tempDir("fabric-home-");
    const up = startCli("fabric", ["up", "--host", "127.0.0.1", "--port", "0", "--monitor-port", "0", "--leaf-port", "0", "--no-mqtt", "--no-grpc", "--no-status-page", "--json"], { env: { FABRIC_HOME: home } });
    h.defer(async () => {
      await up.signal("SIGKILL");
    });
    const ready = await up.json<{ urls: string[]; devCreds: string }>();
    const env = { FABRIC_HOME: home };

    const bad = join(home, "bad.json");
    writeFileSync(bad, JSON.stringify({ name: "x", window: { kind: "tumbling", sizeMs: -1 }, aggregates: ["sum"] }));
    const refused = await runCli("fabric", ["windows", "add", bad], { env });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/window\.window\.sizeMs/);

    const file = join(home, "temp-10s.yaml");
    writeFileSync(file, ["name: temp-10s", "window: { kind: tumbling, sizeMs: 10000 }", "aggregates: [count, avg, max]", "outOfOrderMs: 0", ""].join("\n"));
    const added = await runCli("fabric", ["windows", "add", file], { env });
    expect(added.code).toBe(0);
    const ls = await runCli("fabric", ["windows", "ls", "--json"], { env });
    expect((JSON.parse(ls.stdout) as { name: string }[]).map((d) => d.name)).toEqual(["temp-10s"]);

    const nc = await connectAs(ready.urls, readFileSync(ready.devCreds, "utf8"));
    const js = jetstream(nc);
    const base = 1_700_000_000_000;
    for (const [ts, v] of [
      [base + 1_000, 20],
      [base + 5_000, 22],
      [base + 12_000, 30], // closes [base, base + 10 s)
    ] as const) {
      await pollUntil(() => js.publish("telemetry.plant-a.d1.temp", JSON.stringify({ value: v, ts })).then(() => true), { what: "a publish" });
    }
    const result = await pollUntil(
      async () => {
        const m = await (await jetstream(nc).jetstreamManager()).streams.getMessage("AGGREGATES", { last_by_subj: "agg.temp-10s.plant-a.d1.temp" }).catch(() => null);
        return m === null ? undefined : m.json<{ count: number; avg: number; max: number; start: number }>();
      },
      { what: "the window's result", timeoutMs: 30_000 },
    );
    expect(result).toMatchObject({ start: base, count: 2, avg: 21, max: 22 });
    await nc.close();

    // the hub's own worker holds every partition, and its checkpoints reach the end of the input
    const status = await pollUntil(
      async () => {
        const r = await runCli("fabric", ["windows", "status", "temp-10s", "--json"], { env });
        const [w] = JSON.parse(r.stdout) as { members: string[]; behind: number; partitions: { owner: string; seq: number }[] }[];
        return w !== undefined && w.behind === 0 && w.partitions.every((p) => p.owner !== "") ? w : undefined;
      },
      { what: "the window's status", timeoutMs: 30_000 },
    );
    expect(status.members).toHaveLength(1);
    expect(status.partitions).toHaveLength(8);
    expect(new Set(status.partitions.map((p) => p.owner))).toEqual(new Set(status.members));
    const text = await runCli("fabric", ["windows", "status"], { env });
    expect(text.stdout).toMatch(/^temp-10s: 1 worker\(s\)/);

    expect((await runCli("fabric", ["windows", "rm", "temp-10s"], { env })).code).toBe(0);
    expect((await runCli("fabric", ["windows", "rm", "temp-10s"], { env })).code).toBe(2);
    expect(await up.signal("SIGINT")).toBe(0);
  });
});
