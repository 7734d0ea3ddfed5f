// A minimal MQTT server that acknowledges everything at once and stores nothing: the load generator's ceiling.
import { createServer } from "node:net";
import { generate, parser as mqttParser, type Packet } from "mqtt-packet";

const server = createServer({ noDelay: true }, (socket) => {
  const p = mqttParser({ protocolVersion: 4 });
  p.on("packet", (packet: Packet) => {
    if (packet.cmd === "connect") socket.write(generate({ cmd: "connack", returnCode: 0, sessionPresent: false }));
    else if (packet.cmd === "publish" && packet.qos === 1) socket.write(generate({ cmd: "puback", messageId: packet.messageId ?? 0 }));
    else if (packet.cmd === "publish" && packet.qos === 2) socket.write(generate({ cmd: "pubrec", messageId: packet.messageId ?? 0 }));
    else if (packet.cmd === "pubrel") socket.write(generate({ cmd: "pubcomp", messageId: packet.messageId ?? 0 }));
    else if (packet.cmd === "pingreq") socket.write(generate({ cmd: "pingresp" }));
  });
  socket.on("data", (d: Buffer) => p.parse(d));
  socket.on("error", () => socket.destroy());
});
server.listen(0, "127.0.0.1", () => {
  const a = server.address();
  process.stdout.write(`${JSON.stringify({ port: typeof a === "object" && a !== null ? a.port : 0 })}\n`);
});
