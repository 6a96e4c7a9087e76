// Users' standing, given their tasks and limits at a time: GPU-hours in the quota window, and
// past use decayed by its half-life for fair share.
import { describe, expect, it } from 'vitest';
import { accountsFrom as accountsOfRuns, DEFAULT_RESOURCES, runsOf, type TaskRecord, type UsageTask, type UserLimits } from '.';

const H = 3_600_000;
const NOW = Date.parse('2026-12-04T12:00:00Z');
const task = (owner: string, startHoursAgo: number, endHoursAgo: number | null, gpus = 1) =>
  ({
    spec: { owner, resources: { ...DEFAULT_RESOURCES, gpus } },
    startedAt: new Date(NOW - startHoursAgo * H).toISOString(),
    finishedAt: endHoursAgo === null ? null : new Date(NOW - endHoursAgo * H).toISOString(),
  }) as Pick<TaskRecord, 'spec' | 'startedAt' | 'finishedAt'>;
const limits = (name: string, over: Partial<{ maxGpus: number; gpuHours: number; gpuHoursWindowHours: number; weight: number }> = {}) => ({
  name,
  maxGpus: over.maxGpus ?? null,
  gpuHours: over.gpuHours ?? null,
  gpuHoursWindowHours: over.gpuHoursWindowHours ?? null,
  weight: over.weight ?? 1,
});

/** As the simulation calls it: over task records. */
const accountsFrom = (tasks: UsageTask[], limits: UserLimits[], now: number, halfLifeMs: number) =>
  accountsOfRuns(runsOf(tasks), limits, now, halfLifeMs);

describe('accountsFrom', () => {
  it('GPU-hours in the window: devices × the part of each run inside it, running tasks up to now', () => {
    const a = accountsFrom(
      [task('alice', 30, 20, 2), task('alice', 3, 1, 4), task('alice', 2, null)],
      [limits('alice', { gpuHours: 100, gpuHoursWindowHours: 24 })],
      NOW,
      24 * H,
    );
    // 2 GPUs × (24 − 20) h inside the window + 4 × 2 h + 1 × 2 h so far.
    expect(a.get('alice')!.gpuHoursUsed).toBeCloseTo(8 + 8 + 2, 6);
    expect(a.get('alice')).toMatchObject({ gpuHoursCap: 100, maxGpus: null, weight: 1 });
  });
  it('fair share: finished use decays by half per half-life; running use is the policy’s to count', () => {
    const recent = accountsFrom([task('a', 1, 0)], [], NOW, 24 * H).get('a')!.usageGpuSeconds;
    const dayOld = accountsFrom([task('a', 25, 24)], [], NOW, 24 * H).get('a')!.usageGpuSeconds;
    expect(recent).toBeGreaterThan(3500);
    expect(recent).toBeLessThanOrEqual(3600);
    expect(dayOld / recent).toBeCloseTo(0.5, 2);
    expect(accountsFrom([task('a', 1, null)], [], NOW, 24 * H).get('a')!.usageGpuSeconds).toBe(0);
  });
  it('a user with limits and no tasks is there with no use; a task never started counts nothing', () => {
    const a = accountsFrom([{ ...task('b', 1, 0), startedAt: null }], [limits('alice', { maxGpus: 2, weight: 3 })], NOW, H);
    expect(a.get('alice')).toEqual({ maxGpus: 2, gpuHoursCap: null, gpuHoursUsed: 0, usageGpuSeconds: 0, weight: 3 });
    expect(a.has('b')).toBe(false);
  });
});
