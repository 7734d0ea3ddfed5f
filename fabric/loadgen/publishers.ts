import { credentials as grpcCredentials } from "@grpc/grpc-js";
import { gzipSync } from "node:zlib";
import { jetstream } from "@nats-io/jetstream";
import { headers } from "@nats-io/transport-node";
import { CONTENT_ENCODING_HEADER } from "../core/index.js";
import mqtt from "mqtt";
import { callMetadata } from "../grpc/auth.js";
import { connectWithCreds, keyPairFromSeed, parseCreds, peekJwt } from "../../identity/index.js";
import { proofPassword } from "../../ingress/auth.js";
import { PublishServiceClient, PublishServiceService } from "../../proto/gen/fabric/v1/publish.js";
import type { BenchOptions, BenchPath, BenchTargets } from "./options.js";

/** One connection of a path: publishes a reading (resolves once the path acknowledges it, at its QoS) and closes. */
export interface Publisher {
  publish(subject: string, payload: Uint8Array): Promise<void>;
  close(): Promise<void>;
}

/** The subject's MQTT topic (a/b/c). */
const topicOf = (subject: string): string => subject.replaceAll(".", "/");

export async function openPublisher(path: BenchPath, i: number, targets: BenchTargets, o: BenchOptions): Promise<Publisher> {
  if (path !== "grpc" && o.compression === "deflate") throw new Error(`${path} payloads are compressed with gzip only (deflate is gRPC's)`);
  const gzip = path !== "grpc" && o.compression === "gzip";
  if (path === "nats") {
    const nc = await connectWithCreds(targets.creds, { servers: targets.servers, name: `fabric bench ${i}` });
    const js = jetstream(nc);
    return {
      publish: async (subject, payload) => {
        if (!gzip) {
          await js.publish(subject, payload);
          return;
        }
        const h = headers();
        h.set(CONTENT_ENCODING_HEADER, "gzip");
        await js.publish(subject, gzipSync(payload), { headers: h });
      },
      close: () => nc.close(),
    };
  }
  if (path === "mqtt") {
    if (targets.mqtt === undefined) throw new Error("the MQTT path needs --mqtt mqtt://host:port");
    const { jwt, seed } = parseCreds(targets.creds);
    const claimed = peekJwt(jwt)["name"];
    const name = typeof claimed === "string" ? claimed : "";
    const kp = keyPairFromSeed(seed);
    const clientId = `fabric-bench-${process.pid}-${i}`;
    const client = await mqtt.connectAsync(targets.mqtt, {
      protocolVersion: 5,
      clientId,
      username: name,
      password: proofPassword(jwt, name, clientId, (d) => kp.sign(d)),
      reconnectPeriod: 0,
      connectTimeout: 10_000,
    });
    return {
      publish: async (subject, payload) => {
        if (!gzip) {
          await client.publishAsync(topicOf(subject), Buffer.from(payload), { qos: o.qos });
          return;
        }
        await client.publishAsync(topicOf(subject), gzipSync(payload), { qos: o.qos, properties: { userProperties: { "content-encoding": "gzip" } } });
      },
      close: () => client.endAsync(),
    };
  }
  if (targets.grpc === undefined) throw new Error("the gRPC path needs --grpc host:port");
  // grpc-js's compression algorithms: 1 deflate, 2 gzip
  const algorithm = o.compression === "gzip" ? 2 : o.compression === "deflate" ? 1 : undefined;
  const client = new PublishServiceClient(targets.grpc, grpcCredentials.createInsecure(), algorithm === undefined ? {} : { "grpc.default_compression_algorithm": algorithm });
  const method = PublishServiceService.publish.path;
  return {
    publish: (subject, payload) =>
      new Promise<void>((resolve, reject) => {
        client.publish({ subject, data: Buffer.from(payload), headers: {}, idempotencyKey: "" }, callMetadata(targets.creds, method), (err) => (err === null ? resolve() : reject(err)));
      }),
    close: () => {
      client.close();
      return Promise.resolve();
    },
  };
}
