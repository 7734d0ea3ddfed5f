import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Attributes, type Link, type Span, type SpanContext, type Tracer } from "@opentelemetry/api";
import type { MsgHdrs } from "@nats-io/transport-node";
import type { SpanExporter } from "@opentelemetry/sdk-trace-base";
import { errorMessage } from "./errors.js";
import type { Logger } from "./logger.js";

/**
 * Distributed traces (W3C trace context, OpenTelemetry).
 *
 * The fabric carries a `traceparent` (and `tracestate`) wherever a message goes, whether tracing is on or off:
 * the NATS header `traceparent` is where a stored message keeps it. Tracing is on only once initTracing found
 * OTEL_EXPORTER_OTLP_ENDPOINT (or was handed an exporter): then the fabric continues the traces it is given,
 * one span per hop, and the propagated traceparent is the fabric's span. It never starts a trace of its own
 * (a message without a traceparent gets no span), so the cost of tracing follows what callers choose to trace.
 * Off, no span is made and the SDK is not even loaded: hot paths check tracingEnabled() first.
 */

/** The NATS header (and MQTT 5 user property, and gRPC metadata key) of a W3C traceparent. */
export const TRACEPARENT = "traceparent";
/** The W3C tracestate that goes with it. */
export const TRACESTATE = "tracestate";

/** The fabric's span names: stable, dashboards and alerts use them. */
export const SPAN = {
  mqttPublish: "mqtt publish",
  grpcPublish: "grpc publish",
  commandSend: "command send",
  windowResult: "window result",
  grpcDeliver: "grpc deliver",
} as const;

/** The OTLP endpoint variables (either turns tracing on, as the OpenTelemetry SDKs read them). */
const ENDPOINT_VARS = ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"] as const;

export interface TracingOptions {
  /** `service.name` of the spans (OTEL_SERVICE_NAME overrides it). */
  serviceName: string;
  logger: Logger;
  /**
   * Exports here instead of OTLP, each span as it ends (tests: the SDK's InMemorySpanExporter). Without it,
   * tracing is on only when OTEL_EXPORTER_OTLP_ENDPOINT (or _TRACES_ENDPOINT) is set, with batched export.
   */
  exporter?: SpanExporter;
  /** The environment that decides whether tracing is on (default process.env; the OTLP exporter reads its OTEL_EXPORTER_OTLP_* settings from process.env). */
  env?: NodeJS.ProcessEnv;
}

/** Tracing as initTracing set it up: shutdown exports what is left and turns tracing off. */
export interface Tracing {
  /** Exports every ended span now. */
  flush(): Promise<void>;
  shutdown(): Promise<void>;
}

let tracer: Tracer | undefined;

/** Whether spans are made: one comparison, for the hot paths to ask first. */
export function tracingEnabled(): boolean {
  return tracer !== undefined;
}

/**
 * Turns tracing on when OTEL_EXPORTER_OTLP_ENDPOINT is set or an exporter is given; otherwise does nothing and
 * returns undefined. The SDK and the OTLP exporter (the OTEL_EXPORTER_OTLP_* variables apply) are
 * loaded only then (OTLP/HTTP, JSON). Spans leave through a batch processor: export never holds up the data path (a full queue
 * drops spans, not messages). One tracing per process: a second call while one is on is refused.
 */
export async function initTracing(options: TracingOptions): Promise<Tracing | undefined> {
  const env = options.env ?? process.env;
  const endpoint = ENDPOINT_VARS.map((k) => env[k]).find((v) => v !== undefined && v !== "");
  if (options.exporter === undefined && endpoint === undefined) return undefined;
  if (tracer !== undefined) throw new Error("tracing is already initialised in this process");
  const [{ BasicTracerProvider, BatchSpanProcessor, SimpleSpanProcessor }, { resourceFromAttributes }] = await Promise.all([import("@opentelemetry/sdk-trace-base"), import("@opentelemetry/resources")]);
  let processor;
  if (options.exporter !== undefined) {
    processor = new SimpleSpanProcessor(options.exporter);
  } else {
    const { OTLPTraceExporter } = await import("@opentelemetry/exporter-trace-otlp-http");
    processor = new BatchSpanProcessor(new OTLPTraceExporter());
  }
  const serviceName = env["OTEL_SERVICE_NAME"] || options.serviceName;
  const provider = new BasicTracerProvider({ resource: resourceFromAttributes({ "service.name": serviceName }), spanProcessors: [processor] });
  tracer = provider.getTracer("fabric");
  options.logger.info({ serviceName, endpoint: endpoint ?? "(in-process exporter)" }, "tracing on: spans exported over OTLP");
  return {
    flush: () => provider.forceFlush(),
    shutdown: async () => {
      tracer = undefined;
      await provider.shutdown().catch((err: unknown) => options.logger.warn({ err: errorMessage(err) }, "spans not exported at shutdown"));
    },
  };
}

/** A W3C traceparent, parsed. */
export interface TraceParent {
  traceId: string;
  spanId: string;
  /** The trace flags (bit 0: sampled). */
  flags: number;
}

const TRACEPARENT_00 = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;
/** A later version: the same first four fields, then `-` and whatever that version adds. */
const TRACEPARENT_LATER = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:-.*)?$/;
const ZERO_TRACE = "0".repeat(32);
const ZERO_SPAN = "0".repeat(16);

/**
 * A traceparent as W3C Trace Context level 1 defines it (`00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`,
 * lowercase, neither id all zeros; a later version's first four fields, version ff refused), or undefined.
 */
export function parseTraceparent(value: string | undefined): TraceParent | undefined {
  if (value === undefined || value.length < 55 || value.length > 512) return undefined;
  const m = TRACEPARENT_00.exec(value) ?? (value.startsWith("00") ? null : TRACEPARENT_LATER.exec(value));
  if (m === null) return undefined;
  const [traceId, spanId, flags] = m.length === 4 ? [m[1], m[2], m[3]] : m[1] === "ff" ? [] : [m[2], m[3], m[4]];
  if (traceId === undefined || spanId === undefined || flags === undefined || traceId === ZERO_TRACE || spanId === ZERO_SPAN) return undefined;
  return { traceId, spanId, flags: parseInt(flags, 16) };
}

// W3C tracestate: at most 32 comma-separated key=value members, keys lowercase (optionally tenant@system)
const TRACESTATE_KEY = /^(?:[a-z][_0-9a-z\-*/]{0,255}|[a-z0-9][_0-9a-z\-*/]{0,240}@[a-z][_0-9a-z\-*/]{0,13})$/;
const TRACESTATE_VALUE = /^[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$/;

/** Whether a tracestate is well formed (W3C: ≤ 32 members, ≤ 512 characters), so it may travel on. */
export function isValidTracestate(value: string | undefined): value is string {
  if (value === undefined || value.length > 512) return false;
  const members = value.split(",").map((s) => s.trim()).filter((s) => s !== "");
  if (members.length === 0 || members.length > 32) return false;
  return members.every((member) => {
    const i = member.indexOf("=");
    return i > 0 && TRACESTATE_KEY.test(member.slice(0, i)) && TRACESTATE_VALUE.test(member.slice(i + 1));
  });
}

const hex2 = (n: number): string => (n & 0xff).toString(16).padStart(2, "0");

/** The traceparent of a span context. */
export function formatTraceparent(sc: Pick<SpanContext, "traceId" | "spanId" | "traceFlags">): string {
  return `00-${sc.traceId}-${sc.spanId}-${hex2(sc.traceFlags)}`;
}

/** A span the fabric made, and the traceparent that carries it on. */
export interface ChildSpan {
  span: Span;
  traceparent: string;
}

/** The span context of a traceparent from elsewhere (tracestate travels in its own header, unchanged). */
function remoteContext(tp: TraceParent): SpanContext {
  return { traceId: tp.traceId, spanId: tp.spanId, traceFlags: tp.flags, isRemote: true };
}

/**
 * A span child of `traceparent`, with links to `links` (other traceparents it stands for, e.g. the readings of
 * a window); undefined when tracing is off or the traceparent is malformed (no span is parented on it).
 */
export function startChildSpan(name: string, traceparent: string | undefined, attributes: Attributes, kind: SpanKind, links?: readonly string[]): ChildSpan | undefined {
  if (tracer === undefined) return undefined;
  const tp = parseTraceparent(traceparent);
  if (tp === undefined) return undefined;
  const linked: Link[] = [];
  for (const l of links ?? []) {
    const p = parseTraceparent(l);
    if (p !== undefined && l !== traceparent) linked.push({ context: remoteContext(p) });
  }
  const span = tracer.startSpan(name, { kind, attributes, links: linked }, trace.setSpanContext(ROOT_CONTEXT, remoteContext(tp)));
  return { span, traceparent: formatTraceparent(span.spanContext()) };
}

/**
 * Continues the trace of a message about to be stored or sent: a span child of its `traceparent` header, whose
 * own traceparent replaces the header (so the next hop is its child). Undefined (headers unchanged) when tracing
 * is off or the message has no valid traceparent.
 */
export function continueTrace(headers: MsgHdrs, name: string, subject: string, kind: SpanKind, attributes?: Attributes): ChildSpan | undefined {
  if (tracer === undefined) return undefined;
  const child = startChildSpan(name, headers.get(TRACEPARENT), { ...messagingAttributes(subject), ...attributes }, kind);
  if (child !== undefined) headers.set(TRACEPARENT, child.traceparent);
  return child;
}

/**
 * Sets a message's trace context: `traceparent` when it is well formed, with `tracestate` when that is too. A
 * malformed traceparent is dropped (and its tracestate with it: it means nothing alone), wherever it came from;
 * whatever trace context the headers held before is replaced.
 */
export function carryTraceContext(headers: MsgHdrs, traceparent: string | undefined, tracestate: string | undefined): void {
  if (headers.has(TRACEPARENT)) headers.delete(TRACEPARENT);
  if (headers.has(TRACESTATE)) headers.delete(TRACESTATE);
  if (traceparent === undefined || parseTraceparent(traceparent) === undefined) return;
  headers.set(TRACEPARENT, traceparent);
  if (isValidTracestate(tracestate)) headers.set(TRACESTATE, tracestate);
}

/** Ends a span, with an error status when the work failed. */
export function endSpan(span: Span | undefined, err?: unknown): void {
  if (span === undefined) return;
  if (err !== undefined) {
    span.setStatus({ code: SpanStatusCode.ERROR, message: errorMessage(err) });
  }
  span.end();
}

/** `p`, ending `span` when it settles (with the error if it fails). */
export function endWhenSettled<T>(span: ChildSpan | undefined, p: Promise<T>): Promise<T> {
  if (span === undefined) return p;
  return p.then(
    (v) => {
      endSpan(span.span);
      return v;
    },
    (err: unknown) => {
      endSpan(span.span, err);
      throw err;
    },
  );
}

const SITE_SUBJECTS = new Set(["telemetry", "events", "cmd"]);

/** OpenTelemetry messaging attributes of a subject, with the site and device of a data subject. */
export function messagingAttributes(subject: string): Attributes {
  const a: Attributes = { "messaging.system": "nats", "messaging.destination.name": subject };
  const t = subject.split(".", 4);
  const [kind, site, device] = t;
  if (kind !== undefined && SITE_SUBJECTS.has(kind) && t.length === 4) {
    a["fabric.site"] = site;
    a["fabric.device"] = device;
  } else if (kind === "agg") {
    a["fabric.window"] = site;
  }
  return a;
}

export { SpanKind };
