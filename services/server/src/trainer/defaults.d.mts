// Types of defaults.mjs (plain JavaScript, shared with the trainer shepherd).

/** Longest output line kept whole (TRAINYARD_LOG_LINE_BYTES); longer ones are cut. */
export const DEFAULT_LOG_LINE_BYTES: number;
/** Plain log lines a run may write per second (TRAINYARD_LOG_LINES_PER_SECOND); more are dropped. */
export const DEFAULT_LOG_LINES_PER_SECOND: number;
/** Least time between two progress reports recorded as events (an epoch change or the last step comes sooner). */
export const DEFAULT_PROGRESS_INTERVAL_MS: number;
