export {
  HUB_STREAMS,
  HUB_KV_BUCKETS,
  REJECT_REASON_HEADER,
  DEAD_LETTER_STREAM,
  deadLetterSubject,
  MQTT_RETAINED_STREAM,
  MQTT_RETAINED_PREFIX,
  MQTT_SESSIONS_BUCKET,
  MQTT_WILLS_BUCKET,
  MQTT_INSTANCES_BUCKET,
  MQTT_INSTANCE_TTL_MS,
  LATEST_BUCKET,
  DEFINITIONS_BUCKET,
  CHECKPOINTS_BUCKET,
  LEASES_BUCKET,
  LEASE_TTL_MS,
  EDGE_SITES_BUCKET,
  DEVICES_BUCKET,
  TWINS_BUCKET,
  USED_NONCES_BUCKET,
  COMMAND_KEYS_BUCKET,
  COMMAND_KEYS_TTL_MS,
  SINK_DEFINITIONS_BUCKET,
  SINK_STATUS_BUCKET,
  SINK_STATUS_TTL_MS,
  ensureHubStreams,
  ensureRetainedStream,
  ensureKvBuckets,
} from "./definitions.js";
export type { StreamDefinition, EnsureResult } from "./definitions.js";
export { AGGREGATES, aggregateNameSchema, sketch, SKETCH_RELATIVE_ACCURACY, STATE_SCHEMAS } from "./aggregates.js";
export type { Aggregate, AggregateName, SketchState, StateOf } from "./aggregates.js";
export { windowSpecSchema, slicedWindowSchema, sliceMs, sliceStart, windowsOf, slicesOf, windowsEndingIn } from "./windows.js";
export type { WindowSpec, SlicedWindowSpec } from "./windows.js";
export { windowDefinitionSchema } from "./definition.js";
export type { WindowDefinition, WindowDefinitionInput } from "./definition.js";
export { WindowOperator, createOperator, restoreOperator, partialSchema } from "./operator.js";
export type { Emission, LateInput, Operator, OperatorSnapshot, OperatorState, PartialWindow, WindowResult } from "./operator.js";
export { SessionOperator } from "./session-operator.js";
export type { SessionSnapshot } from "./session-operator.js";
export { DEFAULT_CHECKPOINT_EVERY_MS, WindowRunner } from "./worker.js";
export { WindowGroup, startWindowWorker } from "./group.js";
export type { WindowGroupOptions, WindowWorker, WindowWorkerOptions } from "./group.js";
export { partitionOf } from "./partition.js";
export { saveDefinition, listDefinitions, removeDefinition, runDefinedWorkers, windowStatus } from "./registry.js";
export type { PartitionStatus, WindowStatus } from "./registry.js";
export { dataSubjectStream } from "./data-subjects.js";
export { kvKeys } from "./kv-keys.js";
export { definitionStore } from "./kv-definitions.js";
export type { DefinitionStore, NamedSchema } from "./kv-definitions.js";
