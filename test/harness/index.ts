export { Harness, TestServer } from "./servers.js";
export { startTestHub, testLogger } from "./hub.js";
export type { TestHub } from "./hub.js";
export { runCli, cliPath } from "./cli.js";
export type { CliResult } from "./cli.js";
export { connectAs, expectDisconnect, waitClosed } from "./clients.js";
