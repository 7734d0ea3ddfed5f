/**
 * Three regions linked in a ring (a dials b, b dials c, c dials a): every link is accepted (no loop detected),
 * nothing is relayed on (live or stored), each region's events are copied once into both others, and a
 * revocation in one region reaches both others.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { pollUntil } from "../../fabric/core/index.js";
import { issueUser, pushAccounts, revokeUsers } from "../../identity/index.js";
import { connectAs, Harness, waitClosed } from "../harness/index.js";
import { copySubjects, startTestRegions, type TestRegions } from "./region-helpers.js";

const h = new Harness();
let t: TestRegions;
const NAMES = ["a", "b", "c"] as const;

afterAll(() => h.dispose());
beforeAll(async () => {
  t = await startTestRegions(h, NAMES, [
    ["a", "b"],
    ["b", "c"],
    ["c", "a"],
  ]);
  for (const r of NAMES) expect((await t.waitLinked(r)).map((l) => l.peer).sort()).toEqual(NAMES.filter((n) => n !== r));
}, 120_000);

describe("three regions in a ring", () => {
  it("live traffic reaches each other region once, never relayed on", async () => {
    const nc = Object.fromEntries(await Promise.all(NAMES.map(async (r) => [r, await t.service(r)] as const)));
    const got: Record<string, string[]> = { a: [], b: [], c: [] };
    for (const r of NAMES) {
      nc[r]?.subscribe("region.>", {
        callback: (_e, m) => {
          got[r]?.push(m.subject);
        },
      });
    }
    await Promise.all(NAMES.map((r) => nc[r]?.flush() ?? Promise.resolve()));
    // interest crosses the links: wait until each region hears the others, then count one round exactly
    await pollUntil(
      async () => {
        for (const r of NAMES) nc[r]?.publish(`telemetry.s-${r}.warmup.t`, "w");
        await Promise.all(NAMES.map((r) => nc[r]?.flush() ?? Promise.resolve()));
        return NAMES.every((r) => NAMES.filter((o) => o !== r).every((o) => got[r]?.includes(`region.${o}.telemetry.s-${o}.warmup.t`)));
      },
      { timeoutMs: 20_000, intervalMs: 200, what: "live traffic across the ring" },
    );
    for (const r of NAMES) got[r] = [];
    for (const r of NAMES) for (let i = 0; i < 100; i++) nc[r]?.publish(`telemetry.s-${r}.d.t${i}`, `${i}`);
    await pollUntil(() => NAMES.every((r) => (got[r]?.filter((s) => !s.includes("warmup")).length ?? 0) >= 200), { timeoutMs: 10_000, what: "200 messages in each region" });
    // a little longer: anything relayed on or echoed would arrive now
    await Promise.all(NAMES.map((r) => nc[r]?.flush() ?? Promise.resolve()));
    for (const r of NAMES) {
      const real = got[r]?.filter((s) => !s.includes("warmup")) ?? [];
      expect(real).toHaveLength(200);
      expect(new Set(real).size).toBe(200);
      expect(real.every((s) => /^region\.[abc]\.telemetry\.s-[abc]\.d\.t\d+$/.test(s) && !s.startsWith(`region.${r}.`))).toBe(true);
    }
  });

  it("each region's events are copied exactly once into both others, and nothing is copied on", async () => {
    for (const r of NAMES) {
      const js = jetstream(await t.service(r));
      await Promise.all(Array.from({ length: 300 }, (_, i) => js.publish(`events.s-${r}.d.e${i}`, `${i}`, { msgID: `${r}-${i}` })));
    }
    for (const r of NAMES) {
      const nc = await t.service(r);
      for (const o of NAMES.filter((x) => x !== r)) {
        const copy = await pollUntil(async () => {
          const s = await copySubjects(nc, o);
          return s.size >= 300 ? s : undefined;
        }, { timeoutMs: 30_000, intervalMs: 250, what: `events of ${o} in ${r}` });
        expect(copy.size).toBe(300);
        expect([...copy.values()].every((n) => n === 1)).toBe(true);
        expect([...copy.keys()].every((s) => s.startsWith(`region.${o}.events.s-${o}.`))).toBe(true);
      }
      const own = await (await jetstreamManager(nc)).streams.info("EVENTS");
      expect(own.state.messages).toBe(300);
    }
  }, 90_000);

  it("a revocation in one region disconnects the user in both others", async () => {
    const ksB = t.regions["b"]?.ks;
    if (ksB === undefined) throw new Error("no region b");
    const user = issueUser(ksB, { account: "fleet", role: "service", name: "ring-user" });
    const conns = await Promise.all(NAMES.map((r) => connectAs(t.regions[r]?.url ?? "", user.creds ?? "")));
    revokeUsers(ksB, "fleet", user.record.publicKey);
    await pushAccounts(ksB, { servers: [t.regions["b"]?.url ?? ""], accounts: ["fleet"] });
    await Promise.all(conns.map((c) => waitClosed(c, 10_000)));
    // each region's keystore copy takes the revocation just after its servers do (pushed first, stored after)
    for (const r of NAMES) await pollUntil(() => (t.regions[r]?.ks.account("fleet").revocations[user.record.publicKey] ?? 0) > 0, { timeoutMs: 5_000, what: `the revocation in ${r}'s keystore` });
  });
});
