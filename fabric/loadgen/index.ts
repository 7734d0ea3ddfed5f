export { benchOptionsSchema, assertTargetAllowed, BENCH_PATHS } from "./options.js";
export type { BenchOptions, BenchOptionsInput, BenchPath, BenchTargets } from "./options.js";
export { runBench } from "./run.js";
export type { BenchResult } from "./run.js";
export { renderBench, benchChart } from "./report.js";
