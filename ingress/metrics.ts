import { counter, fastCounter, fastHistogram, gauge, isFabricError, type FastCounterChild } from "../fabric/core/index.js";
import { ReasonCode, type MqttError, type ReasonCodeValue } from "./errors.js";

/**
 * The MQTT ingress's metrics (process-wide: every ingress of the process adds to them). Label values are
 * bounded: protocol versions, QoS levels, results and reasons from fixed tables.
 */

type ProtocolVersion = "3.1" | "3.1.1" | "5.0";
/** What became of a PUBLISH from a client. */
export type PublishResult = "stored" | "forwarded" | "rejected" | "refused" | "failed";

const VERSION_LABEL: Readonly<Record<number, ProtocolVersion>> = { 3: "3.1", 4: "3.1.1", 5: "5.0" };
const versionLabel = (v: number): ProtocolVersion => VERSION_LABEL[v] ?? "3.1.1";

const connections = gauge<"protocol_version">({ name: "fabric_mqtt_connections", help: "MQTT connections accepted (CONNACK sent) and open, by protocol version", labelNames: ["protocol_version"] });
const connects = counter<"protocol_version">({ name: "fabric_mqtt_connects_total", help: "MQTT connections accepted, by protocol version", labelNames: ["protocol_version"] });
const authFailures = counter<"reason">({
  name: "fabric_mqtt_auth_failures_total",
  help: "MQTT connections refused for their credential, by reason (the credential check's code, else the MQTT reason)",
  labelNames: ["reason"],
});
const publishes = fastCounter<"qos" | "result">({
  name: "fabric_mqtt_publishes_total",
  help: "PUBLISH packets from clients by QoS and result: stored (acknowledged once in a stream), forwarded (QoS 0, sent on), rejected (kept in REJECTED), refused (not allowed, bad payload), failed (not stored)",
  labelNames: ["qos", "result"],
});
const ackLatency = fastHistogram<"qos">({
  name: "fabric_mqtt_publish_ack_seconds",
  help: "time from a QoS 1/2 PUBLISH read to its PUBACK/PUBREC written (the store in JetStream included)",
  labelNames: ["qos"],
});
const droppedDeliveries = counter({ name: "fabric_mqtt_dropped_deliveries_total", help: "QoS 0 deliveries dropped because the client did not read fast enough" });

// the per-message paths use plain slots (fast-metrics.ts), bound once per label set
const publishChildren = new Map<string, FastCounterChild>();
function publishChild(qos: number, result: PublishResult): FastCounterChild {
  const key = `${qos}:${result}`;
  let c = publishChildren.get(key);
  if (c === undefined) {
    c = publishes.child({ qos: String(qos), result });
    publishChildren.set(key, c);
  }
  return c;
}
const ackChildren = [undefined, ackLatency.child({ qos: "1" }), ackLatency.child({ qos: "2" })] as const;

/** The reasons counted as authentication failures (the others are protocol errors). */
const AUTH_REASONS: ReadonlySet<ReasonCodeValue> = new Set([ReasonCode.BadUserNameOrPassword, ReasonCode.NotAuthorized, ReasonCode.BadAuthenticationMethod]);
const REASON_NAMES: ReadonlyMap<number, string> = new Map(Object.entries(ReasonCode).map(([k, v]) => [v, k.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toLowerCase()]));

export const ingressMetrics = {
  connected(version: number): void {
    const v = versionLabel(version);
    connections.inc({ protocol_version: v });
    connects.inc({ protocol_version: v });
  },
  disconnected(version: number): void {
    connections.dec({ protocol_version: versionLabel(version) });
  },
  /** A CONNECT refused: counted when it was for the credential. */
  connectRefused(err: MqttError): void {
    if (!AUTH_REASONS.has(err.reason)) return;
    const cause = err.cause;
    const reason = isFabricError(cause) ? cause.code.replace(/^FABRIC_ERR_/, "").toLowerCase() : (REASON_NAMES.get(err.reason) ?? "unknown");
    authFailures.inc({ reason });
  },
  published(qos: number, result: PublishResult): void {
    publishChild(qos, result).inc();
  },
  /** A QoS 1/2 publish settled: `since` is when it was read (performance.now()). */
  acknowledged(qos: 1 | 2, since: number): void {
    ackChildren[qos].observe((performance.now() - since) / 1000);
  },
  droppedDelivery(): void {
    droppedDeliveries.inc();
  },
};
