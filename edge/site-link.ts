import type { JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import { z } from "zod";
import { errorMessage, subjects, type Logger } from "../fabric/core/index.js";
import type { SiteRegistration, SiteStreamKind } from "../leafnode-config/index.js";
import { EdgeError } from "./errors.js";
import { LINK_CHECK_EVERY_MS } from "./options.js";
import { backlogOf, pauseSource } from "./site-streams.js";

/** How long events may hold the other streams back after the link returns before they flow anyway. */
export const EVENTS_FIRST_MAX_MS = 120_000; // 2 min
const EVENTS_FIRST_POLL_MS = 50;
/** How long one pause of a held-back source lasts while the link is down (renewed at half of it). */
const HOLD_PAUSE_MS = 120_000; // 2 min
const REQUEST_TIMEOUT_MS = 5_000; // 5 s

const registerReplySchema = z.union([z.strictObject({ ok: z.literal(true) }), z.strictObject({ error: z.string() })]);
const leafzSchema = z.looseObject({ leafs: z.array(z.looseObject({})).nullish() });

/** Whether the site's server has its leaf link to the hub (its monitoring endpoint says). */
async function leafLinked(monitorPort: number): Promise<boolean> {
  try {
    const res = await fetch(`http://127.0.0.1:${monitorPort}/leafz`, { signal: AbortSignal.timeout(1_000) });
    const body = leafzSchema.parse(await res.json());
    return (body.leafs ?? []).length > 0;
  } catch {
    return false;
  }
}

export interface SiteLinkOptions {
  site: string;
  /** The agent's connection to the site's server (its requests cross the leaf link to the hub). */
  nc: NatsConnection;
  jsm: JetStreamManager;
  /** The site's server's monitoring port (it may change only by a restart on the same ports). */
  monitorPort: () => number;
  /** The streams the hub sources from the site. */
  shipping: readonly SiteStreamKind[];
  /** Fetches the account JWTs from the hub and applies them to the site's server. */
  syncTrust: () => Promise<void>;
  trustSyncEveryMs: number;
  logger: Logger;
}

/**
 * Follows the site's leaf link (the server's /leafz, every LINK_CHECK_EVERY_MS). While it is down, the sources
 * other than events stay paused (renewed while it lasts, lapsing by themselves should the agent die). When it
 * returns: the account JWTs first (revocations made meanwhile), then the registration, then the events backlog
 * drains before the others resume. While it is up: the hub's notices of account updates, and a periodic sync.
 */
export class SiteLink {
  private linked = false;
  private since = Date.now();
  private caught = false;
  private readonly waiters: (() => void)[] = [];
  private catchingUp: Promise<void> | undefined;
  private checking = false;
  private pausedUntil = 0;
  private syncing: Promise<void> | undefined;
  private syncAgain = false;
  private stopped = false;
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly sub: Subscription;
  private readonly heldBack: readonly SiteStreamKind[];
  private readonly log: Logger;

  constructor(private readonly o: SiteLinkOptions) {
    this.log = o.logger.child({ link: o.site });
    this.heldBack = o.shipping.filter((k) => k !== "events");
    this.sub = o.nc.subscribe(subjects.edge.trust(o.site), {
      callback: () => {
        if (this.linked && this.caught && !this.stopped) this.syncNow();
      },
    });
    this.timers.push(
      setInterval(() => {
        if (this.checking || this.stopped) return;
        this.checking = true;
        void this.check().finally(() => (this.checking = false));
      }, LINK_CHECK_EVERY_MS),
      setInterval(() => {
        if (this.linked && this.caught && !this.stopped) this.syncNow();
      }, o.trustSyncEveryMs),
    );
    for (const t of this.timers) t.unref();
  }

  /** Holds the sources back until the link is known, then looks at it once. */
  async start(): Promise<void> {
    await this.hold();
    await this.check();
  }

  up(): boolean {
    return this.linked;
  }

  /** Since when the link is as it is (ms since epoch). */
  linkSince(): number {
    return this.since;
  }

  /** Resolves once the link is up and the site has caught up with it. */
  caughtUp(): Promise<void> {
    return this.caught ? Promise.resolve() : new Promise<void>((r) => this.waiters.push(r));
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers.splice(0)) clearInterval(t);
    this.sub.unsubscribe();
  }

  private async check(): Promise<void> {
    const now = await leafLinked(this.o.monitorPort());
    if (now !== this.linked) {
      this.linked = now;
      this.since = Date.now();
      this.caught = false;
      this.log.info({ link: now ? "up" : "down" }, "leaf link changed");
    }
    if (!this.linked) await this.hold().catch((err: unknown) => this.log.debug({ err: errorMessage(err) }, "could not pause a source"));
    if (this.linked && !this.caught && this.catchingUp === undefined) {
      this.catchingUp = this.catchUp()
        .catch((err: unknown) => this.log.warn({ err: errorMessage(err) }, "catching up with the hub failed; trying again"))
        .finally(() => (this.catchingUp = undefined));
    }
  }

  private async catchUp(): Promise<void> {
    // revocations made while the site was away apply before anything else
    await this.o.syncTrust();
    const registration: SiteRegistration = { streams: [...this.o.shipping] };
    const reply = await this.o.nc.request(subjects.edge.register(this.o.site), JSON.stringify(registration), { timeout: REQUEST_TIMEOUT_MS });
    const reg = registerReplySchema.parse(reply.json());
    if ("error" in reg) throw new EdgeError("FABRIC_ERR_EDGE_STREAMS", `the hub did not take the site: ${reg.error}`);
    await this.eventsFirst();
    this.caught = true;
    for (const w of this.waiters.splice(0)) w();
    this.log.info("link up: trust synced, site registered, events drained first");
  }

  private async hold(): Promise<void> {
    if (this.pausedUntil - Date.now() > HOLD_PAUSE_MS / 2) return;
    const until = Date.now() + HOLD_PAUSE_MS;
    for (const k of this.heldBack) await pauseSource(this.o.jsm, this.o.site, k, until);
    this.pausedUntil = until;
  }

  private async eventsFirst(): Promise<void> {
    const until = Date.now() + EVENTS_FIRST_MAX_MS;
    while (this.linked && !this.stopped && Date.now() < until && (await backlogOf(this.o.jsm, this.o.site, "events")) > 0) {
      await new Promise((r) => setTimeout(r, EVENTS_FIRST_POLL_MS));
    }
    if (!this.linked || this.stopped) return;
    for (const k of this.heldBack) await pauseSource(this.o.jsm, this.o.site, k, undefined);
    this.pausedUntil = 0;
  }

  /** One trust sync at a time; one more after it if another was asked for meanwhile. */
  private syncNow(): void {
    if (this.syncing !== undefined) {
      this.syncAgain = true;
      return;
    }
    this.syncing = this.o
      .syncTrust()
      .catch((err: unknown) => this.log.warn({ err: errorMessage(err) }, "trust sync failed"))
      .finally(() => {
        this.syncing = undefined;
        if (this.syncAgain) {
          this.syncAgain = false;
          this.syncNow();
        }
      });
  }
}
