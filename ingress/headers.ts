import { headers as natsHeaders, type MsgHdrs } from "@nats-io/transport-node";
import type { IPublishPacket, UserProperties } from "mqtt-packet";
import { carryTraceContext, TRACEPARENT, TRACESTATE } from "../fabric/core/index.js";

/**
 * MQTT 5 publish properties ↔ NATS headers. User properties whose name is a valid header token become
 * headers of that name (so NATS consumers see them as they are); other names travel percent-encoded in
 * `Fabric-Mqtt-Up`. Headers a NATS publisher set come back to MQTT 5 subscribers as user properties. The user
 * properties `traceparent` and `tracestate` (W3C trace context) become those headers when well formed, and are
 * dropped when the traceparent is not (see fabric/core/tracing.ts).
 */
export const H = {
  client: "Fabric-Mqtt-Client",
  qos: "Fabric-Mqtt-Qos",
  retain: "Fabric-Mqtt-Retain",
  expiresAt: "Fabric-Mqtt-Expires-At",
  responseTopic: "Fabric-Mqtt-Response-Topic",
  correlation: "Fabric-Mqtt-Correlation",
  payloadFormat: "Fabric-Mqtt-Pfi",
  userProperty: "Fabric-Mqtt-Up",
  contentType: "Content-Type",
} as const;

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const RESERVED = /^(nats-|fabric-)/i;

type PublishProperties = NonNullable<IPublishPacket["properties"]>;

/** Headers for an inbound PUBLISH from `clientId`. */
export function headersFromPublish(clientId: string, packet: IPublishPacket, now: number): MsgHdrs {
  const h = natsHeaders();
  h.set(H.client, clientId);
  if (packet.qos < 2) h.set(H.qos, String(packet.qos));
  if (packet.retain) h.set(H.retain, "1");
  const p = packet.properties;
  if (p === undefined) return h;
  if (p.messageExpiryInterval !== undefined) h.set(H.expiresAt, String(now + p.messageExpiryInterval * 1000));
  if (p.contentType !== undefined) h.set(H.contentType, p.contentType);
  if (p.payloadFormatIndicator === true) h.set(H.payloadFormat, "1");
  if (p.responseTopic !== undefined) h.set(H.responseTopic, p.responseTopic);
  if (p.correlationData !== undefined) h.set(H.correlation, Buffer.from(p.correlationData).toString("base64"));
  let traceparent: string | undefined;
  let tracestate: string | undefined;
  for (const [k, v] of Object.entries(p.userProperties ?? {})) {
    for (const value of Array.isArray(v) ? v : [v]) {
      if (k === TRACEPARENT) traceparent ??= value;
      else if (k === TRACESTATE) tracestate ??= value;
      else if (TOKEN.test(k) && !RESERVED.test(k) && !/[\r\n]/.test(value)) h.append(k, value);
      else h.append(H.userProperty, `${encodeURIComponent(k)}=${encodeURIComponent(value)}`);
    }
  }
  // the W3C trace context becomes the `traceparent`/`tracestate` headers; a malformed one is dropped
  if (traceparent !== undefined) carryTraceContext(h, traceparent, tracestate);
  return h;
}

export interface OutboundProperties {
  properties: PublishProperties;
  /** The message expired (MQTT 5 message expiry): it must not be delivered. */
  expired: boolean;
  /** The publishing MQTT client, for no-local. */
  origin: string | undefined;
  retained: boolean;
  /** The QoS it was published with by an MQTT client (deliveries never exceed it); 2 when not from MQTT. */
  publishedQos: 0 | 1 | 2;
}

/** MQTT 5 properties for delivering a NATS message (reply subject → response topic). */
export function propertiesFromHeaders(h: MsgHdrs | undefined, responseTopic: string | undefined, now: number): OutboundProperties {
  const properties: PublishProperties = {};
  let expired = false;
  let origin: string | undefined;
  let retained = false;
  let publishedQos: 0 | 1 | 2 = 2;
  if (responseTopic !== undefined) properties.responseTopic = responseTopic;
  if (h !== undefined) {
    const userProperties: UserProperties = {};
    const add = (k: string, v: string): void => {
      const cur = userProperties[k];
      userProperties[k] = cur === undefined ? v : Array.isArray(cur) ? [...cur, v] : [cur, v];
    };
    for (const [k, values] of h) {
      const v = values[0] ?? "";
      switch (k.toLowerCase()) {
        case H.client.toLowerCase():
          origin = v;
          break;
        case H.retain.toLowerCase():
          retained = v === "1";
          break;
        case H.qos.toLowerCase():
          publishedQos = v === "0" ? 0 : v === "1" ? 1 : 2;
          break;
        case H.expiresAt.toLowerCase(): {
          const left = Math.ceil((Number(v) - now) / 1000);
          if (left <= 0) expired = true;
          else properties.messageExpiryInterval = left;
          break;
        }
        case H.contentType.toLowerCase():
          properties.contentType = v;
          break;
        case H.payloadFormat.toLowerCase():
          properties.payloadFormatIndicator = true;
          break;
        case H.responseTopic.toLowerCase():
          properties.responseTopic = v;
          break;
        case H.correlation.toLowerCase():
          properties.correlationData = Buffer.from(v, "base64");
          break;
        case H.userProperty.toLowerCase():
          for (const pair of values) {
            const i = pair.indexOf("=");
            if (i > 0) add(decodeURIComponent(pair.slice(0, i)), decodeURIComponent(pair.slice(i + 1)));
          }
          break;
        default:
          if (!RESERVED.test(k)) for (const value of values) add(k, value);
      }
    }
    if (Object.keys(userProperties).length > 0) properties.userProperties = userProperties;
  }
  return { properties, expired, origin, retained, publishedQos };
}
