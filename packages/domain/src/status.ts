// The task statuses and the groups every module asks about. The one list: the store, runner,
// CLI, panel and torture checks import these instead of spelling statuses out again. Plain
// data with no imports, so the panel can take it without the rest of the domain.

export const TASK_STATUSES = ['PENDING', 'QUEUED', 'PREPARING', 'TRAINING', 'COMPLETED', 'FAILED', 'CANCELLED'] as const;
export type TaskStatus = (typeof TASK_STATUSES)[number];

/** Ended for good: nothing more happens to the task; it may be deleted. */
export const TERMINAL_STATUSES: readonly TaskStatus[] = ['COMPLETED', 'FAILED', 'CANCELLED'];
/** Waiting for devices: submitted or queued, no trainer started for it yet. */
export const WAITING_STATUSES: readonly TaskStatus[] = ['PENDING', 'QUEUED'];
/** Holding a GPU slot with a trainer starting or running. */
export const ACTIVE_STATUSES: readonly TaskStatus[] = ['PREPARING', 'TRAINING'];
/** Not ended yet: waiting or running, so it may still be cancelled. */
export const OPEN_STATUSES: readonly TaskStatus[] = TASK_STATUSES.filter((s) => !TERMINAL_STATUSES.includes(s));

export function isTerminal(status: TaskStatus | string): boolean {
  return (TERMINAL_STATUSES as readonly string[]).includes(status);
}

export function isWaiting(status: TaskStatus | string): boolean {
  return (WAITING_STATUSES as readonly string[]).includes(status);
}

export function isActive(status: TaskStatus | string): boolean {
  return (ACTIVE_STATUSES as readonly string[]).includes(status);
}
