import { headers as natsHeaders } from "@nats-io/transport-node";
import { PublishServiceService, type PublishServiceServer } from "../../proto/gen/fabric/v1/publish.js";
import { InvalidInputError, isValidSubject } from "../core/index.js";
import { assertMayPublish, type GatewayContext } from "./context.js";
import { unary } from "./handlers.js";

const MAX_IDEMPOTENCY_KEY = 256;

/** PublishService: a JetStream publish under the caller's permissions; the reply means stored. */
export function publishService(ctx: GatewayContext): PublishServiceServer {
  return {
    publish: unary(ctx, PublishServiceService.publish.path, async (req, caller) => {
      if (!isValidSubject(req.subject) || req.subject.includes("*") || req.subject.includes(">")) throw new InvalidInputError(`subject ${JSON.stringify(req.subject)} is not a literal NATS subject`);
      if (req.idempotencyKey.length > MAX_IDEMPOTENCY_KEY) throw new InvalidInputError(`idempotency_key is longer than ${MAX_IDEMPOTENCY_KEY} characters`);
      assertMayPublish(caller, req.subject);
      const h = natsHeaders();
      for (const [k, v] of Object.entries(req.headers)) {
        if (!/^[!-9;-~]+$/.test(k)) throw new InvalidInputError(`header name ${JSON.stringify(k)} is not a valid NATS header name`);
        h.set(k, v);
      }
      const ack = await ctx.publisher.publish(req.subject, req.data, { headers: h, ...(req.idempotencyKey === "" ? {} : { msgId: req.idempotencyKey }) });
      return { stream: ack.stream, sequence: ack.seq, duplicate: ack.duplicate };
    }),
  };
}
