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
  /** Memory other users' tasks and deployments hold on each device, and until when at the latest. */
  holders: { deviceId: string; kind: 'task' | 'deployment'; memoryGb: number; exclusive: boolean; endsBy: string | null }[];
  /** The reservation of the queue's head when it is another user's task. */
  reservation: { startAt: string; deviceIds: string[] } | null;
}

/** A deployment holding a device (its holder id is the deployment's), as queue.get names it. */
export interface DeploymentHolder {
  id: string;
  owner: string;
  /** What it serves: its served model names, else its base model. */
  serves: string[];
}

interface QueueShape {
  devices: {
    id: string;
    holders: {
      taskId: string;
      memoryGb: number;
      exclusive: boolean;
      endsBy: string | null;
      task: TaskRecord | null;
      deployment?: DeploymentHolder | null;
    }[];
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
      if (h.deployment ? h.deployment.owner === viewer.user : mine(h.taskId, h.task)) return true;
      if (h.deployment) foreignIds.add(h.taskId);
      hidden.holders.push({
        deviceId: d.id,
        kind: h.deployment ? 'deployment' : 'task',
        memoryGb: h.memoryGb,
        exclusive: h.exclusive,
        endsBy: h.endsBy,
      });
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

// A scheduler's preemption names the task it made room for ("preempted for task <id> …"), and
// its grounds name that task's owner and every user's devices. The log keeps them whole; a
// reader who is not an admin gets them only when the task made room for is their own.
const PREEMPTED_FOR = /^preempted for task (\S+)/;

/** What a preempted task's owner reads when the task it made room for is another user's. */
export const PREEMPTED_FOR_OTHER = {
  priority: 'preempted for a higher-priority task of another user: it goes back to the queue and resumes from its last checkpoint',
  'fair-share': 'preempted by fair share for a task of another user: it goes back to the queue and resumes from its last checkpoint',
} as const;

/** The task a scheduler's preemption message names, or null for any other message. */
export function preemptedFor(message: string): string | null {
  return PREEMPTED_FOR.exec(message)?.[1] ?? null;
}

/**
 * A stop message as `viewer` may read it. `headOwner`: the owner of the task it names, when
 * known (null reads as another user's).
 */
export function visibleStopMessage(viewer: Viewer, message: string, headOwner: string | null): string {
  if (viewer.admin || preemptedFor(message) === null || headOwner === viewer.user) return message;
  return message.includes(' by fair share') ? PREEMPTED_FOR_OTHER['fair-share'] : PREEMPTED_FOR_OTHER.priority;
}

/** A record whose stop is a preemption for another user's task, its message scrubbed (`headOwner` as above). */
export function visibleStop<T extends Pick<TaskRecord, 'stop'>>(viewer: Viewer, task: T, headOwner: string | null): T {
  if (!task.stop) return task;
  const message = visibleStopMessage(viewer, task.stop.message, headOwner);
  return message === task.stop.message ? task : { ...task, stop: { ...task.stop, message } };
}

interface GroundsShape {
  rule: 'priority' | 'fair-share';
  head: { owner: string };
  victim: { taskId: string; owner: string };
  users: { user: string }[];
  victims: string[];
}

/**
 * An event as `viewer` may read it (they may read its task): a StopRequested of a preemption
 * keeps, for one who is not an admin, the head only when it is theirs, and of the users and
 * victims only themselves and this task; its message as visibleStopMessage says.
 */
export function visibleEvent<E extends { type: string; data: unknown }>(viewer: Viewer, e: E): E {
  if (viewer.admin || e.type !== 'StopRequested') return e;
  const d = e.data as { message: string; grounds?: GroundsShape };
  const headOwner = d.grounds?.head.owner ?? null;
  const message = visibleStopMessage(viewer, d.message, headOwner);
  if (!d.grounds) return message === d.message ? e : { ...e, data: { ...d, message } };
  const { head, users, victims, ...rest } = d.grounds;
  const grounds = {
    ...rest,
    ...(head.owner === viewer.user ? { head } : {}),
    users: users.filter((u) => u.user === viewer.user),
    victims: victims.filter((id) => id === d.grounds!.victim.taskId),
  };
  return { ...e, data: { ...d, message, grounds } };
}
