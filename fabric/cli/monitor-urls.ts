import { InvalidInputError, type MonitoredServer } from "../core/index.js";

/**
 * `--monitor http://host:port …`: the monitoring endpoints of servers this process did not start (`fabric
 * serve` against a cluster), whose figures its /metrics then carries, named `host:port`.
 */
export function monitoredServersOf(urls: readonly string[], flag = "--monitor"): MonitoredServer[] {
  return urls.map((raw) => {
    let u: URL;
    try {
      u = new URL(raw);
    } catch {
      throw new InvalidInputError(`${flag} ${JSON.stringify(raw)} is not a URL: give nats-server's monitoring address, http://host:8222`);
    }
    const port = Number(u.port);
    if (u.protocol !== "http:" || u.port === "" || !Number.isInteger(port) || u.pathname !== "/" || u.search !== "") {
      throw new InvalidInputError(`${flag} ${JSON.stringify(raw)} must be http://host:port (nats-server's monitoring listener)`);
    }
    const host = u.hostname.replace(/^\[(.*)\]$/, "$1");
    return { name: `${u.hostname}:${port}`, host, port };
  });
}
