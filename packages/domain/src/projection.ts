// The read models as pure functions of the log. The store applies `slotChange` in the same
// transaction as each append; `rebuildReadModels` folds a whole log to compare against that.
import type { StoredTaskEvent } from './events';
import { evolve, initialState, toRecord, type TaskState } from './lifecycle';
import type { TaskRecord } from './task';

export interface ReadModels {
  tasks: Map<string, TaskRecord>;
  /** slotId -> taskId holding it. */
  slotHolders: Map<number, string>;
}

/** Which slot (if any) a task takes or gives back by moving from `before` to `after`. */
export function slotChange(
  before: TaskRecord | null,
  after: TaskRecord,
): { release: number | null; acquire: number | null } {
  const had = before?.slotId ?? null;
  const has = after.slotId;
  if (had === has) return { release: null, acquire: null };
  return { release: had, acquire: has };
}

export function rebuildReadModels(events: Iterable<StoredTaskEvent>): ReadModels {
  const states = new Map<string, TaskState>();
  for (const ev of events) {
    states.set(ev.streamId, evolve(states.get(ev.streamId) ?? initialState(), ev));
  }
  const tasks = new Map<string, TaskRecord>();
  const slotHolders = new Map<number, string>();
  for (const [id, state] of states) {
    const record = toRecord(state);
    tasks.set(id, record);
    if (record.slotId !== null) slotHolders.set(record.slotId, id);
  }
  return { tasks, slotHolders };
}
