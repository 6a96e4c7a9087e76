// Small pure helpers for display.

export function shortTime(iso: string | null | undefined, now: Date = new Date()): string {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '—';
  const time = d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
  const sameDay = d.toDateString() === now.toDateString();
  if (sameDay) return time;
  return `${d.toLocaleDateString(undefined, { month: 'short', day: 'numeric' })} ${time}`;
}

export function fullTime(iso: string | null | undefined): string {
  if (!iso) return '';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? '' : d.toLocaleString(undefined, { hour12: false });
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
  TaskAssigned: 'Assigned a GPU slot',
  TrainerSpawned: 'Trainer started',
  TrainingStarted: 'Training started',
  ProgressRecorded: 'Progress',
  ArtifactRecorded: 'Artifact saved',
  StopRequested: 'Stop requested',
  TaskCompleted: 'Completed',
  TaskFailed: 'Failed',
  TaskCancelled: 'Cancelled',
  TaskDeleted: 'Deleted',
};
