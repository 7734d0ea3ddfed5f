import { TRACEPARENT, tracingEnabled } from "../fabric/core/index.js";
import type { JsMsg } from "@nats-io/jetstream";

/** A window result links to at most this many readings' traces (tracing on). */
export const MAX_RESULT_LINKS = 32;
/** Keys whose trace context is remembered; beyond this the memory starts over (as the route cache does). */
const MAX_KEYS = 100_000;

/** The trace context of a result: the traceparent it carries, and the other readings' (span links). */
export interface ResultTrace {
  traceparent: string;
  links: string[];
}

/**
 * The trace context of window results, per key. A result aggregates many readings, so many traces: it carries
 * the traceparent of the latest reading of its key (in the order the worker reads them) that came with one
 * before the result was emitted, which is the reading that closed the window or the last that fed it. With
 * tracing on, the `window result` span is that traceparent's child and links to the other readings with a
 * traceparent since the key's previous result (at most MAX_RESULT_LINKS). This lives in memory only: a result
 * re-emitted after a restart may carry none (JetStream stores it once anyway, by its message id).
 */
export class KeyTraces {
  private readonly last = new Map<string, string>();
  private readonly since = new Map<string, string[]>();

  /** A reading of `key` read from the source: remembers its traceparent, if it has one. */
  note(key: string, m: JsMsg): void {
    const h = m.headers;
    if (h === undefined) return;
    const tp = h.get(TRACEPARENT);
    if (tp === "") return;
    if (this.last.size >= MAX_KEYS && !this.last.has(key)) {
      this.last.clear();
      this.since.clear();
    }
    this.last.set(key, tp);
    if (!tracingEnabled()) return;
    const links = this.since.get(key);
    if (links === undefined) this.since.set(key, [tp]);
    else if (links.length < MAX_RESULT_LINKS) links.push(tp);
  }

  /** The trace context of a result of `key` emitted now (undefined: no reading of it had one). */
  take(key: string): ResultTrace | undefined {
    const traceparent = this.last.get(key);
    if (traceparent === undefined) return undefined;
    const links = this.since.get(key) ?? [];
    this.since.delete(key);
    return { traceparent, links };
  }
}
