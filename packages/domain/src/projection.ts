// The read models as pure functions of the log. The store applies `deviceChange` in the same
// transaction as each append; `rebuildReadModels` folds a whole log to compare against that.
import type { StoredTaskEvent } from './events';
import { isDeploymentStream } from './deployment';
import { evolve, initialState, toRecord, type TaskState } from './lifecycle';
import type { DeviceGrant } from './resources';
import type { TaskRecord } from './task';

/**
 * The shape of the task read model as this code folds it. Raise it whenever evolve/toRecord
 * changes what a TaskRecord holds: start-up then refolds the read models from the log, so a new
 * field is never read as undefined from a record an older fold wrote.
 */
export const TASK_PROJECTION_VERSION = 4;

export interface ReadModels {
  tasks: Map<string, TaskRecord>;
  /** Who holds which device, sorted by device then task (see holderKey). */
  deviceHolders: DeviceHolderRow[];
}

export interface DeviceHolderRow {
  deviceId: string;
  taskId: string;
  memoryMb: number;
  exclusive: boolean;
}

/** The devices a task takes or gives back by moving from `before` to `after`. */
export function deviceChange(before: TaskRecord | null, after: TaskRecord): { release: DeviceGrant[]; acquire: DeviceGrant[] } {
  const had = before?.devices ?? [];
  const has = after.devices;
  const key = (g: DeviceGrant) => `${g.deviceId}\u0000${g.memoryMb}\u0000${g.exclusive}`;
  const hasKeys = new Set(has.map(key));
  const hadKeys = new Set(had.map(key));
  return { release: had.filter((g) => !hasKeys.has(key(g))), acquire: has.filter((g) => !hadKeys.has(key(g))) };
}

/** The holder rows of one task's record. */
export function holderRows(r: TaskRecord): DeviceHolderRow[] {
  return r.devices.map((g) => ({ deviceId: g.deviceId, taskId: r.id, memoryMb: g.memoryMb, exclusive: g.exclusive }));
}

export function sortHolders(rows: DeviceHolderRow[]): DeviceHolderRow[] {
  return rows.sort((a, b) =>
    a.deviceId < b.deviceId ? -1 : a.deviceId > b.deviceId ? 1 : a.taskId < b.taskId ? -1 : a.taskId > b.taskId ? 1 : 0,
  );
}

/** Folds a log, event by event, into the read models (memory grows with tasks, not events). */
export class ReadModelFold {
  private readonly states = new Map<string, TaskState>();
  readonly lastPositions = new Map<string, string>();
  events = 0;

  add(ev: StoredTaskEvent): void {
    // Deployments share the log on streams of their own; they are not tasks.
    if (isDeploymentStream(ev.streamId)) return;
    this.states.set(ev.streamId, evolve(this.states.get(ev.streamId) ?? initialState(), ev));
    this.lastPositions.set(ev.streamId, ev.position);
    this.events++;
  }

  result(): ReadModels {
    const tasks = new Map<string, TaskRecord>();
    const deviceHolders: DeviceHolderRow[] = [];
    for (const [id, state] of this.states) {
      const record = toRecord(state);
      tasks.set(id, record);
      deviceHolders.push(...holderRows(record));
    }
    return { tasks, deviceHolders: sortHolders(deviceHolders) };
  }
}

export function rebuildReadModels(events: Iterable<StoredTaskEvent>): ReadModels {
  const fold = new ReadModelFold();
  for (const ev of events) fold.add(ev);
  return fold.result();
}
