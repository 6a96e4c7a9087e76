// A recorded log as replay jobs: given these events, then these jobs (submission, timeout,
// request, run time from the last assignment to the end), and these left out.
import { describe, expect, it } from 'vitest';
import { DEFAULT_RESOURCES, type NewTaskEvent, type StoredTaskEvent, type TaskSpec } from '@trainyard/domain';
import { jobsFromLog } from './log-jobs';

const T0 = Date.parse('2026-12-04T10:00:00Z');
let position = 0;
const ev = (streamId: string, atS: number, e: NewTaskEvent): StoredTaskEvent =>
  ({
    ...e,
    streamId,
    version: 0,
    position: String(++position),
    recordedAt: new Date(T0 + atS * 1000).toISOString(),
    metadata: { actor: 'test', schemaVersion: 2 },
  }) as StoredTaskEvent;
const spec = (over: Partial<TaskSpec> = {}): TaskSpec => ({
  name: 'n',
  model: 'm',
  datasetPath: 'd',
  outputDir: 'o',
  config: {
    epochs: 1,
    batchSize: 1,
    gradientAccumulation: 1,
    learningRate: 1e-4,
    maxLength: 64,
    load8bit: false,
    load4bit: false,
    loraRank: 8,
    loraAlpha: 16,
  },
  timeoutMs: 3_600_000,
  resources: { ...DEFAULT_RESOURCES },
  owner: 'alice',
  ...over,
});
const submitted = (id: string, atS: number, over: Partial<TaskSpec> = {}) =>
  ev(id, atS, { type: 'TaskSubmitted', data: { spec: spec(over) } });
const assigned = (id: string, atS: number, gpuIndexes: number[]) =>
  ev(id, atS, {
    type: 'TaskAssigned',
    data: {
      devices: gpuIndexes.map((i) => ({ deviceId: `gpu${i}`, gpuIndex: i, uuid: null, migProfile: null, memoryMb: 0, exclusive: true })),
      runnerId: 'r',
      attempt: 1,
      grounds: null,
    },
  });

describe('jobsFromLog', () => {
  it('takes submission, timeout and request from TaskSubmitted, and the run time from the last assignment to the terminal event', () => {
    const log = [
      submitted('a', 0, { timeoutMs: 600_000 }),
      submitted('b', 5, { resources: { gpus: 2, memoryMb: 20_000, shared: true, memorySource: 'given' } }),
      assigned('a', 1, [0]),
      ev('a', 61, { type: 'TaskCompleted', data: { exitCode: 0 } }),
      assigned('b', 61, [0, 1]),
      ev('b', 70, { type: 'TaskFailed', data: { reason: 'exit', message: 'x', exitCode: 1, signal: null } }),
      ev('b', 80, { type: 'TaskDeleted', data: {} }),
    ];
    expect(jobsFromLog(log)).toEqual({
      jobs: [
        { id: 'a', submitMs: T0, durationMs: 60_000, timeoutMs: 600_000, request: { gpus: 1, memoryMb: null, shared: false } },
        { id: 'b', submitMs: T0 + 5000, durationMs: 9000, timeoutMs: 3_600_000, request: { gpus: 2, memoryMb: 20_000, shared: true } },
      ],
      neverRan: 0,
      unfinished: 0,
      gpusSeen: 2,
    });
  });

  it('leaves out a task cancelled while queued, and one not finished, and counts them', () => {
    const log = [
      submitted('q', 0),
      ev('q', 3, { type: 'TaskQueued', data: {} }),
      ev('q', 9, { type: 'TaskCancelled', data: { reason: null } }),
      submitted('r', 1),
      assigned('r', 2, [3]),
      submitted('s', 2),
    ];
    expect(jobsFromLog(log)).toEqual({ jobs: [], neverRan: 1, unfinished: 2, gpusSeen: 1 });
  });

  it('keeps log order (the service FIFO order), not the order tasks ended in', () => {
    const log = [
      submitted('a', 0),
      submitted('b', 0),
      assigned('b', 1, [0]),
      ev('b', 2, { type: 'TaskCancelled', data: { reason: null } }),
    ];
    log.push(assigned('a', 2, [0]), ev('a', 3, { type: 'TaskCompleted', data: { exitCode: 0 } }));
    expect(jobsFromLog(log).jobs.map((j) => j.id)).toEqual(['a', 'b']);
  });
});
