import type { Command, Option } from "commander";
import { resolve } from "node:path";
import { addMetricsOptions, DEFAULT_METRICS_PORT, InvalidInputError, portOption, type MetricsFlags } from "../core/index.js";
import { DEFAULT_GRPC_PORT } from "../grpc/server.js";
import { DEFAULT_MQTT_PORT, DEFAULT_MQTT_WS_PORT, DEFAULT_MQTTS_PORT } from "../../ingress/index.js";
import { DEFAULT_EXCHANGE_PORT, DEFAULT_HOST, DEFAULT_STATUS_HOST, DEFAULT_STATUS_PORT, type HubServicesOptions } from "../hub/index.js";

/** The flags of the hub's services, shared by `fabric up` and `fabric serve`. */
export interface ServiceFlags extends MetricsFlags {
  data?: string;
  store?: string;
  host: string;
  mqttPort: number;
  mqttWsPort: number;
  mqttsPort: number;
  mqttTlsCert?: string;
  mqttTlsKey?: string;
  mqtt: boolean;
  windows: boolean;
  sinks: boolean;
  grpc: boolean;
  grpcPort: number;
  grpcTlsCert?: string;
  grpcTlsKey?: string;
  grpcTlsCa?: string;
  statusPage: boolean;
  statusHost: string;
  statusPort?: number;
  exchange: boolean;
  exchangePort?: number;
  json?: boolean;
}

export const mqttPortOption = (): Option => portOption("--mqtt-port <port>", "MQTT port of the ingress (0: pick one)", DEFAULT_MQTT_PORT);
export const mqttWsPortOption = (): Option => portOption("--mqtt-ws-port <port>", "MQTT over WebSocket port (0: pick one)", DEFAULT_MQTT_WS_PORT);

/** Data and keystore directories, listen address, MQTT ingress, gRPC gateway, window workers, metrics, JSON output. */
export function addServiceOptions(cmd: Command): Command {
  return addMetricsOptions(cmd, DEFAULT_METRICS_PORT)
    .option("--data <dir>", "data directory (default: $FABRIC_HOME/hub or ~/.local/share/fabric/hub)")
    .option("--store <dir>", "keystore directory (default: $FABRIC_HOME/keys)")
    .option("--host <addr>", "listen address", DEFAULT_HOST)
    .addOption(mqttPortOption())
    .addOption(mqttWsPortOption())
    .addOption(portOption("--mqtts-port <port>", "MQTT over TLS port, with --mqtt-tls-cert/--mqtt-tls-key", DEFAULT_MQTTS_PORT))
    .option("--mqtt-tls-cert <file>", "PEM certificate chain for MQTT over TLS")
    .option("--mqtt-tls-key <file>", "PEM private key for MQTT over TLS")
    .option("--no-mqtt", "do not run the MQTT ingress")
    .addOption(portOption("--grpc-port <port>", "gRPC API port (0: pick one)", DEFAULT_GRPC_PORT))
    .option("--grpc-tls-cert <file>", "PEM certificate chain for the gRPC API (TLS)")
    .option("--grpc-tls-key <file>", "PEM private key for the gRPC API")
    .option("--grpc-tls-ca <file>", "PEM CA whose client certificates the gRPC API requires (mTLS)")
    .option("--no-grpc", "do not run the gRPC gateway")
    .option("--no-windows", "do not run window workers in this process (run `fabric worker` processes instead)")
    .option("--no-sinks", "do not run the sinks defined with `fabric sinks add` in this process")
    .addOption(portOption("--status-port <port>", `status page port (default ${DEFAULT_STATUS_PORT}, or one the system picks when that is taken; 0: pick one)`))
    .option("--status-host <addr>", "status page listen address (beyond loopback it asks for the token in <data>/status-page.token)", DEFAULT_STATUS_HOST)
    .option("--no-status-page", "do not serve the status page")
    .addOption(portOption("--exchange-port <port>", `HTTP token exchange port: identity provider tokens for fabric credentials (default ${DEFAULT_EXCHANGE_PORT}, or one the system picks when that is taken; 0: pick one)`))
    .option("--no-exchange", "do not serve the HTTP token exchange")
    .option("--json", "print the ready summary as JSON on stdout");
}

/** The services the flags ask for (files resolved); refuses half-given TLS settings. */
export function serviceOptionsFromFlags(flags: ServiceFlags): Pick<HubServicesOptions, "windows" | "sinks" | "mqtt" | "grpc" | "statusPage" | "exchange"> {
  if ((flags.mqttTlsCert === undefined) !== (flags.mqttTlsKey === undefined)) throw new InvalidInputError("--mqtt-tls-cert and --mqtt-tls-key go together");
  if ((flags.grpcTlsCert === undefined) !== (flags.grpcTlsKey === undefined)) throw new InvalidInputError("--grpc-tls-cert and --grpc-tls-key go together");
  if (flags.grpcTlsCa !== undefined && flags.grpcTlsCert === undefined) throw new InvalidInputError("--grpc-tls-ca (mTLS) needs --grpc-tls-cert and --grpc-tls-key");
  return {
    windows: flags.windows,
    sinks: flags.sinks,
    ...(flags.statusPage ? { statusPage: flags.statusPort === undefined ? { host: flags.statusHost, port: DEFAULT_STATUS_PORT, orAnyPort: true } : { host: flags.statusHost, port: flags.statusPort } } : {}),
    ...(flags.exchange ? { exchange: flags.exchangePort === undefined ? { port: DEFAULT_EXCHANGE_PORT, orAnyPort: true } : { port: flags.exchangePort } } : {}),
    ...(flags.grpc
      ? {
          grpc: {
            port: flags.grpcPort,
            ...(flags.grpcTlsCert === undefined || flags.grpcTlsKey === undefined
              ? {}
              : { tls: { cert: resolve(flags.grpcTlsCert), key: resolve(flags.grpcTlsKey), ...(flags.grpcTlsCa === undefined ? {} : { ca: resolve(flags.grpcTlsCa) }) } }),
          },
        }
      : {}),
    ...(flags.mqtt
      ? {
          mqtt: {
            port: flags.mqttPort,
            wsPort: flags.mqttWsPort,
            ingress: {},
            ...(flags.mqttTlsCert === undefined || flags.mqttTlsKey === undefined ? {} : { tls: { port: flags.mqttsPort, cert: resolve(flags.mqttTlsCert), key: resolve(flags.mqttTlsKey) } }),
          },
        }
      : {}),
  };
}
