// The read models as pure functions of the log. The store applies `slotChange` in the same
// transaction as each append; `rebuildReadModels` folds a whole log to compare against that.
import type { StoredTaskEvent } from './events';
import { evolve, initialState, toRecord, type TaskState } from './lifecycle';
import type { TaskRecord } from './task';

/**
 * The shape of the task read model as this code folds it. Raise it whenever evolve/toRecord
 * changes what a TaskRecord holds: start-up then refolds the read models from the log, so a new
 * field is never read as undefined from a record an older fold wrote.
 */
export const TASK_PROJECTION_VERSION = 1;

export interface ReadModels {
  tasks: Map<string, TaskRecord>;
  /** slotId -> taskId holding it. */
  slotHolders: Map<number, string>;
}

/** Which slot (if any) a task takes or gives back by moving from `before` to `after`. */
export function slotChange(before: TaskRecord | null, after: TaskRecord): { release: number | null; acquire: number | null } {
  const had = before?.slotId ?? null;
  const has = after.slotId;
  if (had === has) return { release: null, acquire: null };
  return { release: had, acquire: has };
}

/** Folds a log, event by event, into the read models (memory grows with tasks, not events). */
export class ReadModelFold {
  private readonly states = new Map<string, TaskState>();
  readonly lastPositions = new Map<string, string>();
  events = 0;

  add(ev: StoredTaskEvent): void {
    this.states.set(ev.streamId, evolve(this.states.get(ev.streamId) ?? initialState(), ev));
    this.lastPositions.set(ev.streamId, ev.position);
    this.events++;
  }

  result(): ReadModels {
    const tasks = new Map<string, TaskRecord>();
    const slotHolders = new Map<number, string>();
    for (const [id, state] of this.states) {
      const record = toRecord(state);
      tasks.set(id, record);
      if (record.slotId !== null) slotHolders.set(record.slotId, id);
    }
    return { tasks, slotHolders };
  }
}

export function rebuildReadModels(events: Iterable<StoredTaskEvent>): ReadModels {
  const fold = new ReadModelFold();
  for (const ev of events) fold.add(ev);
  return fold.result();
}
