// Trainers left behind by a previous process of this instance, given/when/then: given its run
// folders with live trainers and the tasks as the log has them now, when it restarts, then it
// stops exactly those whose run is no longer its to run.
import { describe, expect, it } from 'vitest';
import { decideLeftovers, type RunFolderView, type TaskStatus } from '.';

const run = (taskId: string, attempt: number, trainerAlive = true): RunFolderView => ({
  taskId,
  attempt,
  trainer: { pid: 1000 + attempt, startTime: '42' },
  trainerAlive,
});
const task = (status: TaskStatus, runnerId: string | null, attempt: number, deleted = false) => ({ status, runnerId, attempt, deleted });
const when = (runs: RunFolderView[], tasks: Record<string, ReturnType<typeof task>>) =>
  decideLeftovers('A', runs, new Map(Object.entries(tasks)));

describe('leftover trainers after a restart', () => {
  it('given a task Slurm runs (its job’s trainer in this run folder), it is left alone: Slurm stops it', () => {
    expect(when([run('s', 1), run('s2', 1)], { s: task('TRAINING', 'slurm', 1), s2: task('CANCELLED', 'slurm', 1) })).toEqual([]);
  });
  it('given a task a peer took over and runs as attempt 2, the trainer of attempt 1 here is stopped, saying why', () => {
    const d = when([run('t1', 1)], { t1: task('TRAINING', 'B', 2) });
    expect(d).toEqual([
      {
        taskId: 't1',
        attempt: 1,
        pid: 1001,
        startTime: '42',
        message:
          "trainer 1001 of task t1 (attempt 1) was left running by this instance's previous process, but the task is attempt 2 on B: stopping it",
      },
    ]);
  });
  it('given a task taken back to the queue (or ended, or deleted), its trainer here is stopped', () => {
    const d = when([run('q', 1), run('done', 1), run('gone', 1), run('unknown', 1)], {
      q: task('QUEUED', null, 1),
      done: task('FAILED', 'A', 1),
      gone: task('CANCELLED', 'A', 1, true),
    });
    expect(d.map((k) => [k.taskId, k.message.split('but the task ')[1]])).toEqual([
      ['q', 'is QUEUED: stopping it'],
      ['done', 'is FAILED: stopping it'],
      ['gone', 'no longer exists: stopping it'],
      ['unknown', 'no longer exists: stopping it'],
    ]);
  });
  it('given a later attempt of ours, the earlier attempt’s trainer is stopped and the current one kept', () => {
    expect(when([run('t', 1), run('t', 2)], { t: task('TRAINING', 'A', 2) }).map((k) => k.attempt)).toEqual([1]);
  });
  it('a trainer of a run this instance still holds is left for recovery to re-attach; a dead one, or one of a later attempt, is not judged', () => {
    expect(when([run('t', 1)], { t: task('TRAINING', 'A', 1) })).toEqual([]);
    expect(when([run('t', 1, false)], { t: task('TRAINING', 'B', 2) })).toEqual([]);
    // A run of the next attempt, handed to an executor before the log records its assignment: not judged.
    expect(when([run('t', 2)], { t: task('QUEUED', null, 1) })).toEqual([]);
  });
});
