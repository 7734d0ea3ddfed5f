export {
  HUB_STREAMS,
  HUB_KV_BUCKETS,
  REJECT_REASON_HEADER,
  MQTT_RETAINED_STREAM,
  MQTT_RETAINED_PREFIX,
  MQTT_SESSIONS_BUCKET,
  MQTT_WILLS_BUCKET,
  MQTT_INSTANCES_BUCKET,
  MQTT_INSTANCE_TTL_MS,
  LATEST_BUCKET,
  DEFINITIONS_BUCKET,
  CHECKPOINTS_BUCKET,
  ensureHubStreams,
} from "./definitions.js";
export type { StreamDefinition, EnsureResult } from "./definitions.js";
export { AGGREGATES, aggregateNameSchema, sketch, SKETCH_RELATIVE_ACCURACY } from "./aggregates.js";
export type { Aggregate, AggregateName, SketchState } from "./aggregates.js";
export { windowSpecSchema, slicedWindowSchema, sliceMs, sliceStart, windowsOf, slicesOf } from "./windows.js";
export type { WindowSpec, SlicedWindowSpec } from "./windows.js";
export { windowDefinitionSchema } from "./definition.js";
export type { WindowDefinition, WindowDefinitionInput } from "./definition.js";
export { WindowOperator } from "./operator.js";
export type { Emission, OperatorSnapshot } from "./operator.js";
export { startWindowWorker, DEFAULT_CHECKPOINT_EVERY_MS } from "./worker.js";
export type { WindowWorker, WindowWorkerOptions } from "./worker.js";
export { saveDefinition, listDefinitions, removeDefinition, runDefinedWorkers } from "./registry.js";
