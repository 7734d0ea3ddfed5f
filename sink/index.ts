export { startPostgresSink, TABLE_SPECS } from "./postgres-sink.js";
export type { PostgresSink, PostgresSinkOptions } from "./postgres-sink.js";
export type { StreamSinkStatus } from "./stream-sink.js";
export {
  postgresSinkConfigSchema,
  redactUrl,
  SINK_STREAMS,
  DEFAULT_SINK_NAME,
  DEFAULT_TABLE_PREFIX,
  DEFAULT_MAX_BATCH,
  DEFAULT_ACK_WAIT_MS,
  DEFAULT_RETRY_MIN_MS,
  DEFAULT_RETRY_MAX_MS,
  DEFAULT_RETENTION_CHECK_MS,
} from "./options.js";
export type { PostgresSinkConfig, PostgresSinkConfigInput, SinkStream } from "./options.js";
export { SinkError } from "./errors.js";
export type { SinkErrorCode } from "./errors.js";
export { sinkDefinitionSchema, sinkConfigOf } from "./definition.js";
export type { SinkDefinition, SinkDefinitionInput } from "./definition.js";
export { sinkDefinitions, runDefinedSinks, sinkStatus, removeSink, DEFAULT_SINK_STATUS_EVERY_MS, DEFAULT_REMOVE_WAIT_MS } from "./service.js";
export type { RunDefinedSinksOptions, SinkRunnerReport, SinkConsumerStatus, SinkStatus } from "./service.js";
export { sinkMetrics } from "./metrics.js";
export type { SinkMetricsSource, SinkRowResult, SinkBatchResult } from "./metrics.js";
