// @ts-check
// The one home of the trainer output defaults. Plain JavaScript so that the shepherd (plain
// Node) reads the same numbers as the service: config.ts takes them as the defaults of its
// variables, the launcher for a launch spec that leaves a limit out, the shepherd for a
// launch.json without it, and the runner's progress throttle. Types are in defaults.d.mts.

/** Longest output line kept whole (TRAINYARD_LOG_LINE_BYTES); longer ones are cut. */
export const DEFAULT_LOG_LINE_BYTES = 4096;

/** Plain log lines a run may write per second (TRAINYARD_LOG_LINES_PER_SECOND); more are dropped. */
export const DEFAULT_LOG_LINES_PER_SECOND = 200;

/** Least time between two progress reports recorded as events (an epoch change or the last step comes sooner). */
export const DEFAULT_PROGRESS_INTERVAL_MS = 1000;
