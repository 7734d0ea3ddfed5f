import type { Command } from "commander";
import { portOption } from "./cli.js";
import { errorMessage } from "./errors.js";
import type { Logger } from "./logger.js";
import { DEFAULT_METRICS_HOST, startMetricsServer, type MetricsServer, type MetricsServerOptions } from "./metrics-server.js";

/** The metrics flags of a long-running command. */
export interface MetricsFlags {
  /** False with `--no-metrics`. */
  metrics: boolean;
  /** Undefined: the command's default port. */
  metricsPort?: number | undefined;
  metricsHost: string;
}

/** `--metrics-port N` (0: pick one), `--metrics-host ADDR` and `--no-metrics`. */
export function addMetricsOptions(cmd: Command, defaultPort: number): Command {
  return cmd
    .addOption(portOption("--metrics-port <port>", `Prometheus metrics port, GET /metrics (default: ${defaultPort}; 0: pick one)`))
    .option("--metrics-host <addr>", "listen address of the metrics port", DEFAULT_METRICS_HOST)
    .option("--no-metrics", "do not serve metrics");
}

/**
 * Starts the metrics server the flags ask for (undefined with `--no-metrics`). On the default port, taken by
 * another process (a second fabric process on the machine), it serves on a port the system picks instead and
 * says so; a port given with `--metrics-port` must be free.
 */
export async function startMetricsFromFlags(
  flags: MetricsFlags,
  logger: Logger,
  defaultPort: number,
  options: Pick<MetricsServerOptions, "metrics" | "routes"> = {},
): Promise<MetricsServer | undefined> {
  if (!flags.metrics) return undefined;
  const start = (port: number): Promise<MetricsServer> => startMetricsServer({ host: flags.metricsHost, port, logger, ...options });
  if (flags.metricsPort !== undefined) return start(flags.metricsPort);
  try {
    return await start(defaultPort);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EADDRINUSE") throw err;
    logger.warn({ port: defaultPort, err: errorMessage(err) }, "the default metrics port is taken: serving metrics on a port the system picks (see --metrics-port)");
    return start(0);
  }
}
