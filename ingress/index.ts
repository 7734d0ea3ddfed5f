export { startIngress } from "./server.js";
export type { Ingress, StartIngressOptions } from "./server.js";
export { ingressOptionsSchema, DEFAULT_MQTT_PORT, DEFAULT_MQTTS_PORT, DEFAULT_MQTT_WS_PORT, DEFAULT_MAX_PACKET_SIZE, DEFAULT_RECEIVE_MAXIMUM } from "./config.js";
export type { IngressOptions, IngressConfig } from "./config.js";
export { FABRIC_AUTH_METHOD, proofPassword, proofMessage } from "./auth.js";
export { topicToSubject, subjectToTopic, filterToSubjects, topicMatches } from "./topics.js";
export { topicMappingSchema, telemetryProblem } from "./mapping.js";
export type { TopicMapping } from "./mapping.js";
export { ReasonCode, MqttError } from "./errors.js";
