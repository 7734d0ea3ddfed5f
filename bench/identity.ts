import { createUser, type KeyPair } from "@nats-io/nkeys";
import { encodeUser } from "@nats-io/jwt";
import type { NatsConnection } from "@nats-io/transport-node";
import { createKeyPair, encodeJwt, initKeystore, issueUser, openClaimsPusher, revokeUsers, userClaimsSchema, deviceInboxPrefix, type Keystore } from "../identity/index.js";
import { fromSeed } from "@nats-io/nkeys";
import type { Harness} from "../test/harness/index.js";
import { connectAs, startTestHub, waitClosed } from "../test/harness/index.js";
import { fmt, percentile, rate } from "./lib.js";

const RUN_MS = 3_000;

/** Issuing a device credential: a fresh user key and a JWT signed by the role's scoped key. */
export async function benchIssuance(h: Harness): Promise<{ fabric: number; nkeys: number; fabricStored: number; ratio: number }> {
  const { keystore: ks } = initKeystore(h.tempDir());
  const account = ks.account("fleet");
  const roleKey = account.roles["device"]?.key ?? "";
  const signer = ks.keyPair(roleKey);
  const nkSigner: KeyPair = fromSeed(new TextEncoder().encode(signer.seed));
  const nkAccount = account.publicKey;
  let i = 0;
  const fabric = await rate(() => {
    const user = createKeyPair("user");
    const iat = Math.floor(Date.now() / 1000);
    encodeJwt(
      userClaimsSchema.parse({ jti: "x", iss: signer.publicKey, iat, sub: user.publicKey, name: `d${i++}`, aud: "NATS", nats: { type: "user", version: 2, issuer_account: account.publicKey, tags: ["role:device", "site:s1"] } }),
      signer,
    );
  }, RUN_MS);
  const nkeys = await rate(async () => {
    const user = createUser();
    await encodeUser(`d${i++}`, user, nkAccount, { tags: ["role:device", "site:s1"] }, { signer: nkSigner, scopedUser: true });
  }, RUN_MS, 10);
  // the whole CLI path: the same plus the keystore record written atomically (fsync)
  const fabricStored = await rate(() => issueUser(ks, { account: "fleet", role: "device", name: `s${i++}`, site: "s1" }), RUN_MS, 10);
  return { fabric, nkeys, fabricStored, ratio: fabric / nkeys };
}

export interface RevocationResult {
  /** "push": the account update alone (the raw nats-server path, the anchor); "kick+push": the fabric's revoke */
  mode: "kick+push" | "push";
  nodes: number;
  devices: number;
  revocations: number;
  /** ms from the push request to the revoked client's connection closing */
  pushP50: number;
  pushP99: number;
  /** ms from `revoke` (keystore update, new signed account JWT) to the connection closing */
  endToEndP50: number;
  endToEndP99: number;
  bystandersDisconnected: number;
}

async function connectDevices(ks: Keystore, urls: string[], count: number, prefix: string): Promise<{ nc: NatsConnection; key: string }[]> {
  const out: { nc: NatsConnection; key: string }[] = [];
  const BATCH = 100;
  for (let b = 0; b < count; b += BATCH) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(BATCH, count - b) }, async (_, j) => {
        const n = b + j;
        const r = issueUser(ks, { account: "fleet", role: "device", name: `${prefix}${n}`, site: "bench" });
        const url = urls[n % urls.length] ?? "";
        const nc = await connectAs(url, r.creds ?? "", { inboxPrefix: deviceInboxPrefix("bench", `${prefix}${n}`) });
        return { nc, key: r.record.publicKey };
      }),
    );
    out.push(...batch);
  }
  return out;
}

/** Revocation latency with `devices` connected devices: revoke them one by one, time each disconnect. */
export async function benchRevocation(h: Harness, nodes: number, devices: number, revocations: number, mode: "kick+push" | "push"): Promise<RevocationResult> {
  const hub = await startTestHub(h, { nodes, identityService: false });
  const ks = hub.keystore;
  const victims = await connectDevices(ks, hub.urls, revocations, "v");
  const bystanders = await connectDevices(ks, hub.urls, devices - revocations, "b");
  const pusher = await openClaimsPusher(ks, { servers: hub.urls });
  const push: number[] = [];
  const endToEnd: number[] = [];
  try {
    for (const v of victims) {
      const t0 = performance.now();
      revokeUsers(ks, "fleet", v.key);
      const t1 = performance.now();
      const closed = waitClosed(v.nc, 5_000);
      await (mode === "kick+push" ? pusher.kick("fleet", [v.key]) : undefined);
      const pushed = pusher.push("fleet");
      await closed;
      const t2 = performance.now();
      const r = await pushed;
      if (!r.complete) throw new Error(`push incomplete: ${JSON.stringify(r.servers)}`);
      push.push(t2 - t1);
      endToEnd.push(t2 - t0);
    }
  } finally {
    await pusher.close();
  }
  const bystandersDisconnected = bystanders.filter((b) => b.nc.isClosed()).length;
  await Promise.all(bystanders.map((b) => b.nc.close()));
  return {
    mode,
    nodes,
    devices,
    revocations,
    pushP50: percentile(push, 50),
    pushP99: percentile(push, 99),
    endToEndP50: percentile(endToEnd, 50),
    endToEndP99: percentile(endToEnd, 99),
    bystandersDisconnected,
  };
}

export function issuanceMarkdown(r: Awaited<ReturnType<typeof benchIssuance>>): string {
  return [
    "| signer | credentials/s | ratio |",
    "| --- | ---: | ---: |",
    `| fabric (node:crypto Ed25519: key + scoped JWT) | ${fmt(r.fabric)} | **${fmt(r.ratio, 1)}×** |`,
    `| @nats-io/nkeys + @nats-io/jwt (tweetnacl) | ${fmt(r.nkeys)} | 1× |`,
    `| fabric, whole \`issueUser\` (record written atomically with fsync) | ${fmt(r.fabricStored)} | ${fmt(r.fabricStored / r.nkeys, 1)}× |`,
  ].join("\n");
}

export function revocationMarkdown(rs: RevocationResult[]): string {
  const rows = rs.map((r) => {
    const anchor = rs.find((a) => a.nodes === r.nodes && a.mode === "push");
    const speedup = anchor === undefined || r.mode === "push" ? "1×" : `${fmt(anchor.endToEndP99 / r.endToEndP99, 1)}×`;
    return `| ${r.nodes === 1 ? "single node" : `${r.nodes}-node cluster`} | ${r.mode === "push" ? "account update only (anchor)" : "**fabric: kick + account update**"} | ${fmt(r.devices)} | ${r.revocations} | ${fmt(r.pushP50, 1)} | ${fmt(r.pushP99, 1)} | ${fmt(r.endToEndP50, 1)} | ${fmt(r.endToEndP99, 1)} | ${speedup} | ${r.endToEndP99 < 50 ? "yes" : "no"} | ${r.bystandersDisconnected} |`;
  });
  return [
    "| hub | path | connected devices | revocations | send → disconnect p50 (ms) | p99 | revoke → disconnect p50 (ms) | p99 | p99 vs anchor | p99 < 50 ms | bystanders cut |",
    "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | :---: | ---: |",
    ...rows,
  ].join("\n");
}
