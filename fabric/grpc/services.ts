import { PublishServiceService } from "../../proto/gen/fabric/v1/publish.js";
import type { GatewayContext } from "./context.js";
import { publishService } from "./publish-service.js";

/** A fabric.v1 service the gateway serves: its name (for health), definition and implementation. */
export interface GatewayService {
  name: string;
  definition: object;
  implement(ctx: GatewayContext): object;
}

export const GATEWAY_SERVICES: readonly GatewayService[] = [
  { name: "fabric.v1.PublishService", definition: PublishServiceService, implement: publishService },
];
