// Expected starts, given/when/then: given running tasks with deadlines and a queue, each queued
// task's latest start is when its request fits with the tasks ahead of it holding their devices
// until their own starts plus their timeouts.
import { describe, expect, it } from 'vitest';
import { backfillPolicy, fifoPolicy, type DeviceHolder, type DeviceView, type QueuedTaskView } from '.';
import { expectedStarts } from './expected-start';

const GB = 1024;
const MIN = 60_000;
const NOW = Date.parse('2026-12-04T12:00:00Z');

const gpu = (i: number, holders: DeviceHolder[] = [], over: Partial<DeviceView> = {}): DeviceView => ({
  id: `gpu${i}`,
  gpuIndex: i,
  uuid: `GPU-${i}`,
  name: 'A100',
  memoryMb: 80 * GB,
  migProfile: null,
  externalMemoryMb: 0,
  blockedReason: null,
  holders,
  ...over,
});
const held = (taskId: string, endsInMin: number | null): DeviceHolder => ({
  taskId,
  memoryMb: 80 * GB,
  exclusive: true,
  endsBy: endsInMin === null ? null : NOW + endsInMin * MIN,
});
const task = (taskId: string, over: { gpus?: number; memoryGb?: number; shared?: boolean; timeoutMin?: number } = {}): QueuedTaskView => ({
  taskId,
  queuedPosition: null,
  request: { gpus: over.gpus ?? 1, memoryMb: over.memoryGb === undefined ? null : over.memoryGb * GB, shared: over.shared ?? false },
  timeoutMs: (over.timeoutMin ?? 60) * MIN,
});
/** Minutes from now of each task's expected start (null: none can be told). */
const starts = (devices: DeviceView[], queue: QueuedTaskView[], policy = backfillPolicy, limit?: number) =>
  Object.fromEntries(
    [...expectedStarts(policy, { devices, queue, now: NOW }, limit)].map(([id, at]) => [id, at === null ? null : (at - NOW) / MIN]),
  );

describe('expected starts', () => {
  it('given a free device, the first task starts now and the next waits for its timeout', () => {
    expect(starts([gpu(0)], [task('a', { timeoutMin: 30 }), task('b'), task('c')])).toEqual({ a: 0, b: 30, c: 90 });
  });

  it('given running tasks, the queue takes each device as its holder reaches its deadline', () => {
    const devices = [gpu(0, [held('r0', 20)]), gpu(1, [held('r1', 50)])];
    expect(starts(devices, [task('a', { timeoutMin: 60 }), task('b', { timeoutMin: 10 }), task('c', { timeoutMin: 10 })])).toEqual({
      a: 20,
      b: 50,
      c: 60,
    });
  });

  it('given a gang, it waits until enough devices are free at once, and those behind it wait for it', () => {
    const devices = [gpu(0, [held('r0', 10)]), gpu(1, [held('r1', 40)])];
    expect(starts(devices, [task('gang', { gpus: 2, timeoutMin: 30 }), task('b', { timeoutMin: 5 })])).toEqual({ gang: 40, b: 70 });
  });

  it('given shared tasks that fit side by side, both start now', () => {
    const queue = [task('a', { shared: true, memoryGb: 20 }), task('b', { shared: true, memoryGb: 20 })];
    expect(starts([gpu(0)], queue)).toEqual({ a: 0, b: 0 });
  });

  it('has no figure where no time can be told: a holder without a deadline, a request that never fits, a blocked device', () => {
    expect(starts([gpu(0, [held('r0', null)])], [task('a')])).toEqual({ a: null });
    expect(starts([gpu(0)], [task('big', { gpus: 2 }), task('a')])).toEqual({ big: null, a: 0 });
    expect(starts([gpu(0, [], { blockedReason: 'another program holds it' })], [task('a')])).toEqual({ a: null });
  });

  it('gives the head the same time as the policy reservation, under either policy', () => {
    const devices = [gpu(0, [held('r0', 25)])];
    const d = backfillPolicy.schedule({ devices, queue: [task('a')], now: NOW });
    expect(starts(devices, [task('a')])).toEqual({ a: (d.reservation!.startAt - NOW) / MIN });
    expect(starts(devices, [task('a'), task('b')], fifoPolicy)).toEqual({ a: 25, b: 85 });
  });

  it('tells only the first `limit` tasks', () => {
    expect(Object.keys(starts([gpu(0)], [task('a'), task('b'), task('c')], backfillPolicy, 2))).toEqual(['a', 'b']);
  });
});
