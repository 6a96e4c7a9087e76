// What people read about a task's training besides its status: its speed and the time left, its
// throughput over time, and its accounting (run time, GPU-hours). Functions of the task record and
// of its progress series (tasks.metrics); pure: the time comes in as `now`. The CLI and the panel
// show the same numbers because they call the same functions.
import type { TaskRecord } from './task';

/** One recorded progress report of a task, as tasks.metrics serves it. */
export interface ProgressPoint {
  /** When it was recorded, epoch ms. */
  at: number;
  step: number | null;
  totalSteps: number | null;
  epoch: number | null;
  loss: number | null;
  learningRate: number | null;
}

/** How fast a training task goes and how long it has left. */
export interface Speed {
  stepsPerSecond: number;
  /** At this speed, until its last step; null when its number of steps is unknown. */
  secondsLeft: number | null;
  /** `recent`: over the last reports (the window); `average`: since training began. */
  basis: 'recent' | 'average';
}

/** The reports a recent speed is measured over. */
export const SPEED_WINDOW_MS = 60_000;

/**
 * Steps per second over the reports of the last `windowMs` before the latest one: the steps
 * between the first and the last report in that window over the time between them. Null with
 * fewer than two reports there, or none apart in time or in steps.
 */
export function recentSpeed(points: readonly ProgressPoint[], windowMs = SPEED_WINDOW_MS): number | null {
  let last: ProgressPoint | null = null;
  for (let i = points.length - 1; i >= 0; i--)
    if (points[i]!.step !== null) {
      last = points[i]!;
      break;
    }
  if (!last) return null;
  let first: ProgressPoint | null = null;
  for (const p of points) {
    if (p.step === null || p.at < last.at - windowMs || p.at >= last.at) continue;
    // A retry starts its steps again: only reports on the way up to the last one count.
    if (p.step > last.step!) continue;
    first = p;
    break;
  }
  if (!first) return null;
  const dt = (last.at - first.at) / 1000;
  const ds = last.step! - first.step!;
  return dt > 0 && ds > 0 ? ds / dt : null;
}

/** Steps per second since training began (its last report's step over the time since): null before any step. */
export function averageSpeed(task: Pick<TaskRecord, 'trainingAt' | 'progress'>, now: number): number | null {
  if (!task.trainingAt || !task.progress.step) return null;
  const dt = (now - Date.parse(task.trainingAt)) / 1000;
  return dt > 0 ? task.progress.step / dt : null;
}

/**
 * A training task's speed and time left: from its recent reports when there are enough, else on
 * average since training began. Null for a task that is not training, or has made no step yet.
 */
export function taskSpeed(
  task: Pick<TaskRecord, 'status' | 'trainingAt' | 'progress'>,
  now: number,
  points?: readonly ProgressPoint[],
): Speed | null {
  if (task.status !== 'TRAINING') return null;
  const recent = points ? recentSpeed(points) : null;
  const stepsPerSecond = recent ?? averageSpeed(task, now);
  if (stepsPerSecond === null || !(stepsPerSecond > 0)) return null;
  const { step, totalSteps } = task.progress;
  const secondsLeft = step !== null && totalSteps !== null ? Math.max(0, totalSteps - step) / stepsPerSecond : null;
  return { stepsPerSecond, secondsLeft, basis: recent !== null ? 'recent' : 'average' };
}

/** Steps per second between consecutive reports, at the later one's time (the throughput chart). */
export function throughputSeries(points: readonly ProgressPoint[]): { at: number; stepsPerSecond: number }[] {
  const out: { at: number; stepsPerSecond: number }[] = [];
  let prev: ProgressPoint | null = null;
  for (const p of points) {
    if (p.step === null) continue;
    if (prev && p.at > prev.at && p.step >= prev.step!)
      out.push({ at: p.at, stepsPerSecond: (p.step - prev.step!) / ((p.at - prev.at) / 1000) });
    prev = p;
  }
  return out;
}

/** What a task cost: how long it has held devices, and GPU-hours (its devices × that time). */
export interface Accounting {
  /** From its assignment to its end (or now); null before it was assigned. */
  elapsedMs: number | null;
  /** The devices it asked for (whole GPUs or MIG instances: each counts as one). */
  devices: number;
  gpuHours: number | null;
}

/**
 * A task's run time and GPU-hours as the quotas count them (usage.ts): its devices × the time from
 * its assignment to its end. A retried task counts its current attempt.
 */
export function accounting(task: Pick<TaskRecord, 'spec' | 'startedAt' | 'finishedAt'>, now: number): Accounting {
  const devices = task.spec.resources.gpus;
  if (!task.startedAt) return { elapsedMs: null, devices, gpuHours: null };
  const end = task.finishedAt ? Date.parse(task.finishedAt) : now;
  const elapsedMs = Math.max(0, end - Date.parse(task.startedAt));
  return { elapsedMs, devices, gpuHours: (devices * elapsedMs) / 3_600_000 };
}
