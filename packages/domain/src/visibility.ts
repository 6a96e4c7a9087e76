// What a caller may see of other users' tasks (tokens mode): nothing that names or describes
// them. An admin, and local mode's operator, see everything. Another user's task id reads as
// no task at all, so no answer tells whether it exists.
// Pure, shared by the service (services/server/src/visibility.ts re-exports it) and the simulation.
import type { WaitCode } from './scheduling';
import type { TaskRecord } from './task';

/** The caller, as far as visibility goes. */
export interface Viewer {
  user: string;
  admin: boolean;
}

export function mayRead(viewer: Viewer, task: Pick<TaskRecord, 'spec'>): boolean {
  return viewer.admin || task.spec.owner === viewer.user;
}

/** The task `viewer` gets for an id: null for a task that does not exist, was deleted, or is another user's (all read alike). */
export function visibleTask<T extends Pick<TaskRecord, 'spec' | 'deleted'>>(viewer: Viewer, task: T | null | undefined): T | null {
  return task && !task.deleted && mayRead(viewer, task) ? task : null;
}

/** The owner a list or an audit query is narrowed to: none for an admin. */
export function ownerScope(viewer: Viewer): string | undefined {
  return viewer.admin ? undefined : viewer.user;
}

/** What queue.get says of other users' tasks to a caller who is not an admin. */
export interface HiddenQueue {
  /** Places in the whole queue (as `position` counts) taken by other users' tasks. */
  queuedPositions: number[];
  /** Memory other users' tasks hold on each device, and until when at the latest. */
  holders: { deviceId: string; memoryGb: number; exclusive: boolean; endsBy: string | null }[];
  /** The reservation of the queue's head when it is another user's task. */
  reservation: { startAt: string; deviceIds: string[] } | null;
}

interface QueueShape {
  devices: {
    id: string;
    holders: { taskId: string; memoryGb: number; exclusive: boolean; endsBy: string | null; task: TaskRecord | null }[];
  }[];
  queued: { position: number; task: TaskRecord; reason: { code: WaitCode; message: string } }[];
  reservation: { taskId: string; startAt: string; deviceIds: string[] } | null;
}

const OTHERS_TASK = "another user's task";

/**
 * The queue as `viewer` may see it: all of it for an admin (hidden null); otherwise their own
 * tasks, each at its place in the whole queue, and of the others only places, memory held and a
 * reservation's time, with their ids taken out of the reasons given for the caller's tasks.
 */
export function queueFor<Q extends QueueShape>(viewer: Viewer, q: Q): Q & { hidden: HiddenQueue | null } {
  if (viewer.admin) return { ...q, hidden: null };
  const foreignIds = new Set<string>();
  const mine = (id: string, task: TaskRecord | null) => {
    const ok = task !== null && mayRead(viewer, task);
    if (!ok) foreignIds.add(id);
    return ok;
  };
  const hidden: HiddenQueue = { queuedPositions: [], holders: [], reservation: null };
  const devices = q.devices.map((d) => ({
    ...d,
    holders: d.holders.filter((h) => {
      if (mine(h.taskId, h.task)) return true;
      hidden.holders.push({ deviceId: d.id, memoryGb: h.memoryGb, exclusive: h.exclusive, endsBy: h.endsBy });
      return false;
    }),
  }));
  const queued = q.queued.filter((e) => {
    if (mine(e.task.id, e.task)) return true;
    hidden.queuedPositions.push(e.position);
    return false;
  });
  let reservation = q.reservation;
  if (reservation && !queued.some((e) => e.task.id === reservation!.taskId)) {
    foreignIds.add(reservation.taskId);
    hidden.reservation = { startAt: reservation.startAt, deviceIds: reservation.deviceIds };
    reservation = null;
  }
  // "task <id>" and a bare id alike read "another user's task".
  const scrub = (text: string) =>
    [...foreignIds].reduce((t, id) => t.split(`task ${id}`).join(OTHERS_TASK).split(id).join(OTHERS_TASK), text);
  return {
    ...q,
    devices,
    queued: queued.map((e) => ({ ...e, reason: { ...e.reason, message: scrub(e.reason.message) } })),
    reservation,
    hidden,
  };
}
