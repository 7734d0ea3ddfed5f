import type { JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import { z } from "zod";
import { edgeSourceConsumer, errorMessage, subjects, type Logger } from "../fabric/core/index.js";
import { EDGE_STREAMS, type SiteRegistration, type SiteStreamKind } from "../leafnode-config/index.js";
import { EdgeError } from "./errors.js";
import { LINK_CHECK_EVERY_MS } from "./options.js";
import { backlogOf, pauseSource, resetSource } from "./site-streams.js";

/** How long events may hold the other streams back after the link returns before they flow anyway. */
export const EVENTS_FIRST_MAX_MS = 120_000; // 2 min
const EVENTS_FIRST_POLL_MS = 50;
const REQUEST_TIMEOUT_MS = 5_000; // 5 s
/** A source with a backlog that has neither delivered nor been acknowledged for this long is stalled: it is restarted. */
export const SOURCE_STALL_MS = 10_000; // 10 s (nats-server's own source health check runs every 10 s: it goes first)
/**
 * Right after the link returns, a shipped stream with a backlog whose consumer has had no listener for this long
 * has a hub source that is not set up (a source whose sourcing subscription survived listens within
 * milliseconds): the site asks the hub to restart it at once rather than wait for nats-server's retry, which a
 * setup request lost in the outage holds up for its 5 s timeout, and a failed one for 10 s and more.
 */
export const UNHEARD_AFTER_RETURN_MS = 500; // 0.5 s
const STALL_CHECK_EVERY_MS = 500; // 0.5 s

const registerReplySchema = z.union([z.strictObject({ ok: z.literal(true) }), z.strictObject({ error: z.string() })]);
const restartReplySchema = z.union([z.strictObject({ restarted: z.array(z.string()) }), z.strictObject({ error: z.string() })]);
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
  /** Sets up the site's streams and source consumers again where they are missing (idempotent). */
  ensureStreams: () => Promise<void>;
  /** Fetches the account JWTs from the hub and applies them to the site's server. */
  syncTrust: () => Promise<void>;
  trustSyncEveryMs: number;
  logger: Logger;
}

/**
 * Follows the site's leaf link (the server's /leafz, every LINK_CHECK_EVERY_MS). When it returns: the site's
 * streams and source consumers where missing, the account JWTs (revocations made meanwhile), the registration,
 * then the events backlog drains before the other sources resume. While it is up: the hub's notices of account
 * updates, a periodic sync, and restarts of stalled sources.
 */
export class SiteLink {
  private linked = false;
  private since = Date.now();
  private caught = false;
  private readonly waiters: (() => void)[] = [];
  private catchingUp: Promise<void> | undefined;
  private checking = false;
  private syncing: Promise<void> | undefined;
  private syncAgain = false;
  private stopped = false;
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly sub: Subscription;
  private readonly heldBack: readonly SiteStreamKind[];
  /** Per shipped stream: what was last delivered and acknowledged, and since when neither moved with a backlog. */
  private readonly progress = new Map<SiteStreamKind, { floor: number; delivered: number; since: number; restarts: number }>();
  /** Per shipped stream, since the link returned: since when its backlog has had no listener, and whether the hub was asked. */
  private readonly unheard = new Map<SiteStreamKind, { since: number; asked: boolean }>();
  /** The hub took the site's registration since the link returned: its sources exist. */
  private registered = false;
  private watching = false;
  private restarts = 0;
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
      setInterval(() => {
        if (!this.linked || !this.registered || this.stopped || this.watching) return;
        this.watching = true;
        void this.watchStalls()
          .catch((err: unknown) => this.log.debug({ err: errorMessage(err) }, "could not look at the sources"))
          .finally(() => (this.watching = false));
      }, STALL_CHECK_EVERY_MS),
    );
    for (const t of this.timers) t.unref();
  }

  /** Looks at the link once (then every LINK_CHECK_EVERY_MS). */
  async start(): Promise<void> {
    await this.check();
  }

  up(): boolean {
    return this.linked;
  }

  /** Since when the link is as it is (ms since epoch). */
  linkSince(): number {
    return this.since;
  }

  /** Stalled sources restarted so far. */
  sourceRestarts(): number {
    return this.restarts;
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
      this.registered = false;
      this.progress.clear();
      this.unheard.clear();
      this.log.info({ link: now ? "up" : "down" }, "leaf link changed");
    }
    if (this.linked && !this.caught && this.catchingUp === undefined) {
      this.catchingUp = this.catchUp()
        .catch((err: unknown) => this.log.warn({ err: errorMessage(err) }, "catching up with the hub failed; trying again"))
        .finally(() => (this.catchingUp = undefined));
    }
  }

  private async catchUp(): Promise<void> {
    // a stream or source consumer lost meanwhile (deleted by hand, say) is set up again first: the hub's source
    // of it could never be set up, and nothing of the site would reach the hub
    await this.o.ensureStreams();
    // the other sources wait while an events backlog drains (paused first thing, before the hub's sources resume)
    const held = await this.holdBackForEvents();
    try {
      // revocations made while the site was away apply before anything else
      await this.o.syncTrust();
      const registration: SiteRegistration = { streams: [...this.o.shipping] };
      const reply = await this.o.nc.request(subjects.edge.register(this.o.site), JSON.stringify(registration), { timeout: REQUEST_TIMEOUT_MS });
      const reg = registerReplySchema.parse(reply.json());
      if ("error" in reg) throw new EdgeError("FABRIC_ERR_EDGE_STREAMS", `the hub did not take the site: ${reg.error}`);
      // from here on stalled sources are watched (also while events drain first: a stalled events source would
      // otherwise hold everything back)
      this.registered = true;
      if (held) await this.eventsDrained();
    } finally {
      if (held) for (const k of this.heldBack) await pauseSource(this.o.jsm, this.o.site, k, undefined);
    }
    this.caught = true;
    for (const w of this.waiters.splice(0)) w();
    this.log.info("link up: trust synced, site registered, events drained first");
  }

  /**
   * Events before the rest: when the link returns with an events backlog, the other sources are paused until it
   * has reached the hub (EVENTS_FIRST_MAX_MS at most), then resumed. Best effort: what the hub's sources take in
   * the moment before the pause lands still goes. The sources are not kept paused through an outage: a durable
   * source consumer paused while the hub re-established its source left nats-server's sourcing stalled for 30 s
   * and more in about one test run of three.
   */
  private async holdBackForEvents(): Promise<boolean> {
    if (this.heldBack.length === 0 || (await backlogOf(this.o.jsm, this.o.site, "events")) === 0) return false;
    const until = Date.now() + EVENTS_FIRST_MAX_MS;
    for (const k of this.heldBack) await pauseSource(this.o.jsm, this.o.site, k, until);
    return true;
  }

  private async eventsDrained(): Promise<void> {
    const until = Date.now() + EVENTS_FIRST_MAX_MS;
    while (this.linked && !this.stopped && Date.now() < until && (await backlogOf(this.o.jsm, this.o.site, "events")) > 0) {
      await new Promise((r) => setTimeout(r, EVENTS_FIRST_POLL_MS));
    }
  }

  /** Whether to ask the hub now for a source that has not listened since the link returned (once a return). */
  private unheardAfterReturn(kind: SiteStreamKind, unheard: boolean, now: number): boolean {
    const u = this.unheard.get(kind);
    if (!unheard) {
      // heard (or nothing to hear): from here on the stall watch alone
      if (u === undefined) this.unheard.set(kind, { since: 0, asked: true });
      else if (!u.asked) u.asked = true;
      return false;
    }
    if (u === undefined) {
      this.unheard.set(kind, { since: now, asked: false });
      return false;
    }
    if (u.asked || now - u.since < UNHEARD_AFTER_RETURN_MS) return false;
    u.asked = true;
    this.log.warn({ stream: EDGE_STREAMS[kind].edge, unheardMs: now - u.since }, "the link is back and the hub's source does not listen: asking the hub to restart it");
    return true;
  }

  /**
   * Restarts a stalled source: a shipped stream with a backlog whose consumer, not paused, has neither delivered
   * nor been acknowledged anything for SOURCE_STALL_MS while the link is up (in a steady flow acks come a window
   * at a time, deliveries in between). The first time, when the hub's source listens (the consumer is
   * push-bound), the consumer is reset (nats-server 2.14's consumer reset, ADR-58): what was delivered and not
   * acknowledged goes again from the ack floor, and the hub's durable source, which keeps the last sequence it
   * stored, takes it as a restart without storing anything twice. Otherwise, or when that did not help, the site
   * asks the hub to restart its source (`$FABRIC.edge.<site>.restart`): nats-server retries a source it could
   * not set up with a backoff that grows by 10 s a failure, and a restarted one is set up at once. Right after
   * the link returns the hub is asked sooner, for a backlog nobody listens to (UNHEARD_AFTER_RETURN_MS).
   */
  private async watchStalls(): Promise<void> {
    const now = Date.now();
    const viaHub: SiteStreamKind[] = [];
    for (const kind of this.o.shipping) {
      const ci = await this.o.jsm.consumers.info(EDGE_STREAMS[kind].edge, edgeSourceConsumer(this.o.site));
      const backlog = ci.num_pending + ci.num_ack_pending;
      const floor = ci.ack_floor.stream_seq;
      const delivered = ci.delivered.stream_seq;
      if (this.unheardAfterReturn(kind, backlog > 0 && ci.push_bound !== true, now)) {
        viaHub.push(kind);
        this.progress.set(kind, { floor, delivered, since: now, restarts: 1 });
        continue;
      }
      const seen = this.progress.get(kind);
      if (backlog === 0 || ci.paused === true || seen === undefined || seen.floor !== floor || seen.delivered !== delivered) {
        this.progress.set(kind, { floor, delivered, since: now, restarts: 0 });
        continue;
      }
      if (now - seen.since < SOURCE_STALL_MS) continue;
      const bound = ci.push_bound === true;
      this.log.warn({ stream: EDGE_STREAMS[kind].edge, backlog, ackFloor: floor, delivered, stalledMs: now - seen.since, hubListening: bound }, "the hub's source is stalled: restarting it");
      if (bound && seen.restarts === 0) {
        await resetSource(this.o.nc, this.o.site, kind);
        this.restarts++;
      } else viaHub.push(kind);
      this.progress.set(kind, { floor, delivered, since: now, restarts: seen.restarts + 1 });
    }
    if (viaHub.length > 0) await this.askHubToRestart(viaHub);
  }

  /** Asks the hub to restart its sources of these streams (a failure is logged: the next stall check asks again). */
  private async askHubToRestart(kinds: SiteStreamKind[]): Promise<void> {
    try {
      const reply = await this.o.nc.request(subjects.edge.restart(this.o.site), JSON.stringify({ streams: kinds }), { timeout: REQUEST_TIMEOUT_MS });
      const r = restartReplySchema.parse(reply.json());
      if ("error" in r) throw new EdgeError("FABRIC_ERR_EDGE_STREAMS", r.error);
      this.restarts += r.restarted.length;
      const notSourced = kinds.filter((k) => !r.restarted.includes(k));
      if (notSourced.length > 0) this.log.info({ streams: notSourced }, "the hub did not restart these: it restarts one at most every 10 s, and only what it sources (a site removed with `fabric site rm` stays removed)");
    } catch (err) {
      this.log.warn({ streams: kinds, err: errorMessage(err) }, "the hub did not restart the sources");
    }
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
