/** A default port another process holds: served on one the system picks (said in the log); an asked-for port must be free. */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { describe, expect, it } from "vitest";
import { listenOrAnyPort } from "../../fabric/core/index.js";
import { testLogger } from "../harness/index.js";

describe("listenOrAnyPort", () => {
  it("falls back to a port the system picks for a default that is taken, and refuses an asked-for one", async () => {
    const holder = createServer();
    await new Promise<void>((r) => holder.listen(0, "127.0.0.1", () => r()));
    const taken = (holder.address() as AddressInfo).port;
    try {
      const a = createServer();
      const port = await listenOrAnyPort(a, { host: "127.0.0.1", port: taken, orAnyPort: true, what: "test", flag: "--test-port", logger: testLogger() });
      expect(port).not.toBe(taken);
      expect(port).toBeGreaterThan(0);
      await new Promise<void>((r) => a.close(() => r()));
      const b = createServer();
      await expect(listenOrAnyPort(b, { host: "127.0.0.1", port: taken, orAnyPort: false, what: "test", flag: "--test-port", logger: testLogger() })).rejects.toThrow(/EADDRINUSE/);
    } finally {
      await new Promise<void>((r) => holder.close(() => r()));
    }
  });
});
