import { FabricError, type FabricErrorOptions } from "../fabric/core/index.js";

/** MQTT 5 reason codes the ingress uses (MQTT 5.0 §2.4). */
export const ReasonCode = {
  Success: 0x00,
  GrantedQoS1: 0x01,
  GrantedQoS2: 0x02,
  DisconnectWithWill: 0x04,
  NoMatchingSubscribers: 0x10,
  NoSubscriptionExisted: 0x11,
  ContinueAuthentication: 0x18,
  UnspecifiedError: 0x80,
  MalformedPacket: 0x81,
  ProtocolError: 0x82,
  ImplementationSpecificError: 0x83,
  UnsupportedProtocolVersion: 0x84,
  ClientIdentifierNotValid: 0x85,
  BadUserNameOrPassword: 0x86,
  NotAuthorized: 0x87,
  ServerUnavailable: 0x88,
  ServerBusy: 0x89,
  ServerShuttingDown: 0x8b,
  BadAuthenticationMethod: 0x8c,
  KeepAliveTimeout: 0x8d,
  SessionTakenOver: 0x8e,
  TopicFilterInvalid: 0x8f,
  TopicNameInvalid: 0x90,
  PacketIdentifierInUse: 0x91,
  PacketIdentifierNotFound: 0x92,
  ReceiveMaximumExceeded: 0x93,
  TopicAliasInvalid: 0x94,
  PacketTooLarge: 0x95,
  QuotaExceeded: 0x97,
  PayloadFormatInvalid: 0x99,
  QoSNotSupported: 0x9b,
  SharedSubscriptionsNotSupported: 0x9e,
} as const;
export type ReasonCodeValue = (typeof ReasonCode)[keyof typeof ReasonCode];

/** MQTT 3.1/3.1.1 CONNACK return codes. */
export const ConnackV3 = {
  Accepted: 0,
  UnacceptableProtocolVersion: 1,
  IdentifierRejected: 2,
  ServerUnavailable: 3,
  BadUserNameOrPassword: 4,
  NotAuthorized: 5,
} as const;

/** A protocol-level refusal: carries the MQTT 5 reason code to answer with. */
export class MqttError extends FabricError {
  readonly reason: ReasonCodeValue;
  constructor(reason: ReasonCodeValue, message: string, options: FabricErrorOptions = {}) {
    super("FABRIC_ERR_MQTT", message, { ...options, fields: { ...options.fields, reason } });
    this.reason = reason;
  }
}

/** The ingress's configuration is invalid. */
export class IngressConfigError extends FabricError {
  constructor(message: string, options: FabricErrorOptions = {}) {
    super("FABRIC_ERR_INGRESS_CONFIG", message, options);
  }
}

/** MQTT 3 CONNACK return code for a reason (the one mapping of the two tables). */
export function connackV3For(reason: ReasonCodeValue): number {
  switch (reason) {
    case ReasonCode.UnsupportedProtocolVersion:
      return ConnackV3.UnacceptableProtocolVersion;
    case ReasonCode.ClientIdentifierNotValid:
      return ConnackV3.IdentifierRejected;
    case ReasonCode.BadUserNameOrPassword:
    case ReasonCode.BadAuthenticationMethod:
      return ConnackV3.BadUserNameOrPassword;
    case ReasonCode.NotAuthorized:
      return ConnackV3.NotAuthorized;
    default:
      return ConnackV3.ServerUnavailable;
  }
}
