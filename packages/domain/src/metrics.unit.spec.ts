// Speed, time left, throughput and accounting from a task's record and its progress series.
import { describe, expect, it } from 'vitest';
import { accounting, averageSpeed, recentSpeed, taskSpeed, throughputSeries, type ProgressPoint } from './metrics';
import { DEFAULT_RESOURCES, EMPTY_PROGRESS, type TaskRecord } from './task';

const T0 = Date.parse('2026-12-04T12:00:00Z');
const S = 1000;
const point = (atS: number, step: number | null, loss: number | null = null): ProgressPoint => ({
  at: T0 + atS * S,
  step,
  totalSteps: 100,
  epoch: 1,
  loss,
  learningRate: null,
});
const record = (over: Partial<TaskRecord> & { gpus?: number } = {}) =>
  ({
    status: 'TRAINING',
    spec: { resources: { ...DEFAULT_RESOURCES, gpus: over.gpus ?? 1 } },
    progress: { ...EMPTY_PROGRESS, step: 40, totalSteps: 100 },
    trainingAt: new Date(T0).toISOString(),
    startedAt: new Date(T0 - 10 * S).toISOString(),
    finishedAt: null,
    ...over,
  }) as TaskRecord;

describe('speed', () => {
  it('measures recent steps per second over the last minute of reports', () => {
    // 1 step/s for the first 100 s, then 2 steps/s: the window sees only the fast part.
    const points = [point(0, 0), point(50, 50), point(100, 100), point(130, 160), point(160, 220)];
    expect(recentSpeed(points)).toBe(2);
    expect(recentSpeed(points, 1000 * S)).toBeCloseTo(220 / 160);
  });

  it('has no recent speed with one report, reports at one time, or no steps between them', () => {
    expect(recentSpeed([point(0, 5)])).toBeNull();
    expect(recentSpeed([point(0, 5), point(0, 6)])).toBeNull();
    expect(recentSpeed([point(0, 5), point(10, 5)])).toBeNull();
    expect(recentSpeed([point(0, null), point(10, null)])).toBeNull();
  });

  it('ignores reports of an earlier attempt that went further', () => {
    expect(recentSpeed([point(0, 90), point(10, 2), point(20, 12)])).toBe(1);
  });

  it('averages since training began when the series is too short', () => {
    expect(averageSpeed(record(), T0 + 20 * S)).toBe(2);
    expect(averageSpeed(record({ progress: { ...EMPTY_PROGRESS, step: 0 } }), T0 + 20 * S)).toBeNull();
    expect(averageSpeed(record({ trainingAt: null }), T0 + 20 * S)).toBeNull();
  });

  it('gives a training task its speed and the time its remaining steps take at it', () => {
    expect(taskSpeed(record(), T0 + 20 * S)).toEqual({ stepsPerSecond: 2, secondsLeft: 30, basis: 'average' });
    const points = [point(0, 0), point(10, 40)];
    expect(taskSpeed(record(), T0 + 500 * S, points)).toEqual({ stepsPerSecond: 4, secondsLeft: 15, basis: 'recent' });
    expect(taskSpeed(record({ progress: { ...EMPTY_PROGRESS, step: 40, totalSteps: null } }), T0 + 20 * S)?.secondsLeft).toBeNull();
  });

  it('gives no speed to a task that is not training', () => {
    for (const status of ['QUEUED', 'PREPARING', 'COMPLETED', 'FAILED'] as const)
      expect(taskSpeed(record({ status }), T0 + 20 * S)).toBeNull();
  });

  it('charts throughput between consecutive reports', () => {
    expect(throughputSeries([point(0, 0), point(10, 20), point(10, 25), point(20, 30), point(30, null), point(40, 50)])).toEqual([
      { at: T0 + 10 * S, stepsPerSecond: 2 },
      // From the later of the two reports at 10 s.
      { at: T0 + 20 * S, stepsPerSecond: 0.5 },
      { at: T0 + 40 * S, stepsPerSecond: 1 },
    ]);
  });
});

describe('accounting', () => {
  it('counts its devices × the time from its assignment to its end, as GPU-hours', () => {
    const done = record({ gpus: 2, startedAt: new Date(T0).toISOString(), finishedAt: new Date(T0 + 1800 * S).toISOString() });
    expect(accounting(done, T0 + 99_999 * S)).toEqual({ elapsedMs: 1800 * S, devices: 2, gpuHours: 1 });
  });

  it('counts a running task up to now, and a task never assigned as nothing', () => {
    expect(accounting(record({ startedAt: new Date(T0).toISOString() }), T0 + 3600 * S)).toEqual({
      elapsedMs: 3600 * S,
      devices: 1,
      gpuHours: 1,
    });
    expect(accounting(record({ startedAt: null }), T0)).toEqual({ elapsedMs: null, devices: 1, gpuHours: null });
  });
});
