import { z } from "zod";
import { topicMappingSchema } from "./mapping.js";
import { formatEntrySchema } from "./formats/format-mapping.js";

export const DEFAULT_MQTT_PORT = 1883;
export const DEFAULT_MQTTS_PORT = 8883;
export const DEFAULT_MQTT_WS_PORT = 8083;
export const DEFAULT_MAX_PACKET_SIZE = 1_048_576; // 1 MiB, nats-server's default max_payload
export const DEFAULT_RECEIVE_MAXIMUM = 1_024; // inbound QoS 1/2 messages in flight per client
export const DEFAULT_TOPIC_ALIAS_MAXIMUM = 64;
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000; // 10 s to send CONNECT after the socket opens
export const DEFAULT_MAX_CONNECTIONS = 100_000;
/** How long a persistent session of an MQTT 3 client (which cannot say) outlives its connection. */
export const DEFAULT_SESSION_EXPIRY_SEC = 7 * 86_400; // 7 d
/** Largest session expiry an MQTT 5 client may ask for. */
export const MAX_SESSION_EXPIRY_SEC = 30 * 86_400; // 30 d
/** A proof-of-possession password's timestamp may be this far from the ingress's clock. */
export const PROOF_WINDOW_MS = 300_000; // 5 min

const listener = z.strictObject({ host: z.string().default("0.0.0.0"), port: z.number().int().min(0).max(65_535) });

export const ingressOptionsSchema = z.strictObject({
  /** Plain MQTT over TCP. */
  tcp: listener.optional(),
  /** MQTT over TLS: PEM certificate chain and key (and a CA to ask clients for certificates). */
  tls: listener
    .extend({ cert: z.string().min(1), key: z.string().min(1), ca: z.string().optional(), requestCert: z.boolean().default(false) })
    .optional(),
  /** MQTT over WebSocket (subprotocols mqtt and mqttv3.1), for browsers. */
  ws: listener.extend({ path: z.string().startsWith("/").default("/mqtt") }).optional(),
  maxPacketSize: z.number().int().min(64).max(268_435_455).default(DEFAULT_MAX_PACKET_SIZE),
  receiveMaximum: z.number().int().min(1).max(65_535).default(DEFAULT_RECEIVE_MAXIMUM),
  topicAliasMaximum: z.number().int().min(0).max(65_535).default(DEFAULT_TOPIC_ALIAS_MAXIMUM),
  /** Override the keepalive of clients asking for more (MQTT 5 server keep-alive); 0: never. */
  maxKeepAliveSec: z.number().int().min(0).max(65_535).default(0),
  connectTimeoutMs: z.number().int().positive().default(DEFAULT_CONNECT_TIMEOUT_MS),
  maxConnections: z.number().int().positive().default(DEFAULT_MAX_CONNECTIONS),
  sessionExpirySec: z.number().int().min(0).default(DEFAULT_SESSION_EXPIRY_SEC),
  mappings: z.array(topicMappingSchema).default([]),
  /** Telegraf (line protocol, JSON) and Homie v4 layouts, expanded into TELEMETRY readings (ingress/formats). */
  formats: z.array(formatEntrySchema).default([]),
});
export type IngressOptions = z.input<typeof ingressOptionsSchema>;
export type IngressConfig = z.output<typeof ingressOptionsSchema>;
