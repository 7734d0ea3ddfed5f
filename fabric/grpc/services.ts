import { CommandServiceService } from "../../proto/gen/fabric/v1/command.js";
import { ConsumerServiceService } from "../../proto/gen/fabric/v1/consumer.js";
import { CredentialServiceService } from "../../proto/gen/fabric/v1/credential.js";
import { PublishServiceService } from "../../proto/gen/fabric/v1/publish.js";
import { QueryServiceService } from "../../proto/gen/fabric/v1/query.js";
import { WindowServiceService } from "../../proto/gen/fabric/v1/window.js";
import { DeviceServiceService } from "../../proto/gen/fabric/v1/device.js";
import { deviceService } from "./device-service.js";
import { commandService } from "./command-service.js";
import { credentialService } from "./credential-service.js";
import { queryService } from "./query-service.js";
import { consumerService } from "./consumer-service.js";
import type { GatewayContext } from "./context.js";
import { publishService } from "./publish-service.js";
import { windowService } from "./window-service.js";

/** A fabric.v1 service the gateway serves: its name (for health), definition and implementation. */
export interface GatewayService {
  name: string;
  definition: object;
  implement(ctx: GatewayContext): object;
}

export const GATEWAY_SERVICES: readonly GatewayService[] = [
  { name: "fabric.v1.PublishService", definition: PublishServiceService, implement: publishService },
  { name: "fabric.v1.QueryService", definition: QueryServiceService, implement: queryService },
  { name: "fabric.v1.CommandService", definition: CommandServiceService, implement: commandService },
  { name: "fabric.v1.CredentialService", definition: CredentialServiceService, implement: credentialService },
  { name: "fabric.v1.ConsumerService", definition: ConsumerServiceService, implement: consumerService },
  { name: "fabric.v1.WindowService", definition: WindowServiceService, implement: windowService },
  { name: "fabric.v1.DeviceService", definition: DeviceServiceService, implement: deviceService },
];
