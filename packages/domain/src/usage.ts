// Users' standing for quotas and fair share, as a function of their tasks and limits at a time.
// Pure: the service reads the tasks and limits and calls it; the simulation calls it on its own.
//
// Fair share, as Slurm's and Kueue's: past use decays with a half-life, so what a user ran last
// month weighs little against what they ran this morning. A task's use is its devices × its run
// time; finished tasks count here, running ones count in the policy (their devices now).
import type { TaskEventType } from './events';
import type { Account } from './scheduling';

export interface UserLimits {
  name: string;
  maxGpus: number | null;
  gpuHours: number | null;
  gpuHoursWindowHours: number | null;
  weight: number;
}

/** Past use loses half its weight in this long unless configured (TRAINYARD_FAIR_SHARE_HALF_LIFE_HOURS). */
export const DEFAULT_FAIR_SHARE_HALF_LIFE_MS = 24 * 3_600_000;
/** The GPU-hours quota window when a user's limits give none. */
export const DEFAULT_QUOTA_WINDOW_HOURS = 24 * 7;

/** What a task's use needs: whose it is, how many GPUs, when it ran (a task record has it all). */
export interface UsageTask {
  spec: { owner: string; resources: { gpus: number } };
  startedAt: string | null;
  finishedAt: string | null;
}

/**
 * Events that never start or end a run, nor change whose it is or its GPUs: what a service read
 * of the recent runs still holds after them (the frequent ones: a trainer's reports). Any other
 * event may change a run (lifecycle.unit.spec.ts checks this set against every legal command).
 */
export const EVENTS_LEAVING_RUNS_UNCHANGED: ReadonlySet<TaskEventType> = new Set<TaskEventType>([
  'TrainerSpawned',
  'TrainingStarted',
  'ProgressRecorded',
  'CheckpointRecorded',
  'ArtifactRecorded',
]);

/** One run's use: whose, its GPUs, and when it ran (epoch ms; no end while it runs). */
export interface Run {
  owner: string;
  gpus: number;
  startMs: number;
  endMs: number | null;
}

/** The runs of the tasks that started. */
export function* runsOf(tasks: Iterable<UsageTask>): Generator<Run> {
  for (const t of tasks) {
    if (!t.startedAt) continue;
    yield {
      owner: t.spec.owner,
      gpus: t.spec.resources.gpus,
      startMs: Date.parse(t.startedAt),
      endMs: t.finishedAt ? Date.parse(t.finishedAt) : null,
    };
  }
}

/** Each user with runs or limits: their quota, GPU-hours used in their window, decayed use. */
export function accountsFrom(runs: Iterable<Run>, limits: Iterable<UserLimits>, now: number, halfLifeMs: number): Map<string, Account> {
  const out = new Map<string, Account>();
  const windows = new Map<string, number>();
  for (const l of limits) {
    out.set(l.name, {
      maxGpus: l.maxGpus,
      gpuHoursCap: l.gpuHours,
      gpuHoursUsed: 0,
      usageGpuSeconds: 0,
      weight: l.weight > 0 ? l.weight : 1,
    });
    windows.set(l.name, (l.gpuHoursWindowHours ?? DEFAULT_QUOTA_WINDOW_HOURS) * 3_600_000);
  }
  const decayRate = Math.LN2 / halfLifeMs;
  for (const r of runs) {
    const start = r.startMs;
    const end = r.endMs ?? now;
    if (!(end > start)) continue;
    const user = r.owner;
    let a = out.get(user);
    if (!a) out.set(user, (a = { maxGpus: null, gpuHoursCap: null, gpuHoursUsed: 0, usageGpuSeconds: 0, weight: 1 }));
    const gpus = r.gpus;
    const window = windows.get(user) ?? DEFAULT_QUOTA_WINDOW_HOURS * 3_600_000;
    const from = Math.max(start, now - window);
    if (end > from) a.gpuHoursUsed += (gpus * (end - from)) / 3_600_000;
    // ∫ gpus · 2^(−(now − s)/H) ds over the run, in GPU-seconds.
    if (r.endMs !== null)
      a.usageGpuSeconds += (gpus * (Math.exp(-decayRate * (now - end)) - Math.exp(-decayRate * (now - start)))) / decayRate / 1000;
  }
  return out;
}
