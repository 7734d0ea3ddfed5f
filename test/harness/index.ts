export { Harness, TestServer } from "./servers.js";
export { startTestHub, testLogger } from "./hub.js";
export type { TestHub } from "./hub.js";
export { runCli, cliPath, startCli } from "./cli.js";
export type { CliResult, RunningCli } from "./cli.js";
export { connectAs, expectDisconnect, waitClosed } from "./clients.js";
export { SEED_PATTERN, modesBelow } from "./secrets.js";
export { mosquittoCommand, spawnMosquitto } from "./mosquitto.js";
export { grpcClient, authFor } from "./grpc.js";
