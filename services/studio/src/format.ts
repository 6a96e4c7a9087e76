// Small pure helpers for display.
import type { PlacementGrounds, Task } from './api';
import { requestText as describeRequest } from '@trainyard/catalogue';

export function shortTime(iso: string | null | undefined, now: Date = new Date()): string {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '—';
  const time = d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' });
  const sameDay = d.toDateString() === now.toDateString();
  if (sameDay) return time;
  return `${d.toLocaleDateString(undefined, { month: 'short', day: 'numeric' })} ${time}`;
}

export function fullTime(iso: string | null | undefined): string {
  if (!iso) return '';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? '' : d.toLocaleString(undefined, { hourCycle: 'h23' });
}

export function duration(fromIso: string | null | undefined, toIso: string | null | undefined, now = Date.now()): string {
  if (!fromIso) return '';
  const from = Date.parse(fromIso);
  const to = toIso ? Date.parse(toIso) : now;
  if (!Number.isFinite(from) || !Number.isFinite(to)) return '';
  let s = Math.max(0, Math.round((to - from) / 1000));
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  if (h) return `${h}h ${String(m).padStart(2, '0')}m`;
  if (m) return `${m}m ${String(s).padStart(2, '0')}s`;
  return `${s}s`;
}

export function gb(x: number): string {
  return `${Number.isInteger(x) ? x : x.toFixed(1)} GB`;
}

/** "Qwen/Qwen2.5-Coder-1.5B-Instruct" → "Qwen2.5-Coder-1.5B-Instruct". */
export function modelShort(model: string): string {
  return model.split('/').pop() || model;
}

export const STATUS_LABEL: Record<string, string> = {
  PENDING: 'Pending',
  QUEUED: 'Queued',
  PREPARING: 'Preparing',
  TRAINING: 'Training',
  COMPLETED: 'Completed',
  FAILED: 'Failed',
  CANCELLED: 'Cancelled',
};

/** Human wording of an event type for the timeline. */
export const EVENT_LABEL: Record<string, string> = {
  TaskSubmitted: 'Submitted',
  TaskQueued: 'Queued',
  TaskAssigned: 'Assigned devices',
  TrainerSpawned: 'Trainer started',
  TrainingStarted: 'Training started',
  ProgressRecorded: 'Progress',
  ArtifactRecorded: 'Artifact saved',
  StopRequested: 'Stop requested',
  TaskCompleted: 'Completed',
  TaskFailed: 'Failed',
  TaskCancelled: 'Cancelled',
  TaskDeleted: 'Deleted',
  TaskHandedToSlurm: 'Handed to Slurm',
};

/** MiB → "12 GB" (one decimal). */
export function gbOfMb(mb: number): string {
  return gb(Math.round((mb / 1024) * 10) / 10);
}

/** The devices a task holds, in the catalogue's wording ("gpu0+gpu1"); "" for none. */
export { devicesText } from '@trainyard/catalogue';

/** What a task asks for, in the catalogue's wording with the panel's separator: "1 GPU · shared 12 GB (estimated)". */
export function requestText(r: Task['spec']['resources']): string {
  return describeRequest(r, ' · ');
}

/**
 * Why the scheduler started a task when it did, from the grounds recorded with its assignment:
 * with nothing waiting ahead, ahead of tasks that could not start, or backfilled around the
 * blocked head's reservation; and beside which tasks on a shared device. "" without grounds.
 */
export function groundsText(g: PlacementGrounds): string {
  if (!g) return '';
  const tasks = (n: number) => `${n} task${n === 1 ? '' : 's'}`;
  const r = g.reservation;
  let why: string;
  if (g.backfilled)
    why = `Backfilled ahead of ${tasks(g.ahead)}${r ? ` without delaying task ${r.taskId} (reserved ${r.deviceIds.join(', ')} from ${shortTime(new Date(r.startAt).toISOString())})` : ''}`;
  else if (g.ahead > 0) why = `Started ahead of ${tasks(g.ahead)} that could not start`;
  else why = 'Started with nothing waiting ahead of it';
  const beside = g.devices.filter((d) => d.holders > 0).map((d) => `${tasks(d.holders)} on ${d.deviceId}`);
  return `${why}${beside.length ? `, beside ${beside.join(', ')}` : ''} (${g.policy} policy).`;
}

/** Wait codes as a short badge label. */
export const WAIT_LABEL: Record<string, string> = {
  WAITING_FOR_DEVICES: 'Waiting for devices',
  RESERVED_FOR_HEAD: 'Reserved for the head',
  EXTERNAL_MEMORY: 'Other programs',
  BEHIND_HEAD: 'Behind the head',
  NEVER_FITS: 'Never fits',
  HELD_BY_DEPLOYMENT: 'Held by a deployment',
  STARTING: 'Starting',
};

/** 3_725_000 → "1h 02m", 95_000 → "1m 35s", 4_000 → "4s". */
export function span(ms: number): string {
  return duration(new Date(0).toISOString(), new Date(Math.max(0, ms)).toISOString());
}

/** "12 steps/s", "2.4 steps/s", or "6.2 s/step" when slower than a step a second. */
export function speedText(stepsPerSecond: number): string {
  if (stepsPerSecond >= 1) return `${stepsPerSecond >= 10 ? Math.round(stepsPerSecond) : stepsPerSecond.toFixed(1)} steps/s`;
  return `${(1 / stepsPerSecond).toFixed(1)} s/step`;
}

/** "0.42 GPU-h", "12.5 GPU-h", "<0.01 GPU-h". */
export function gpuHoursText(h: number): string {
  if (h > 0 && h < 0.01) return '<0.01 GPU-h';
  return `${h >= 10 ? h.toFixed(1) : h.toFixed(2)} GPU-h`;
}

/** Why an expected start is a bound, and on what it rests. */
export const EXPECTED_START_NOTE =
  'An upper bound: every running task and every task ahead is counted as running to its timeout. ' +
  'Tasks submitted later may start in gaps (backfill); only the first in the queue is sure not to be delayed by them.';
