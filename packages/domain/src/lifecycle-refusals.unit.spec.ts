// The refusal message says which rule of the machine refused the command: a state with no
// transition for the command's event, or the guard that failed. Given a state, when a command
// the machine refuses, then this detail.
import { describe, expect, it } from 'vitest';
import { IllegalCommandError, initialState, type TaskCommand, type TaskState } from '.';
import { ev, given, grant, spec, when } from '../test/given';

const running = () => [ev.submitted(), ev.assigned(), ev.spawned(), ev.training()];

const cases: [string, TaskState, TaskCommand, string][] = [
  ['no task yet', initialState(), { type: 'cancel' }, 'no such task'],
  ['a task that exists, submitted again', given(ev.submitted()), { type: 'submit', taskId: 't1', spec: spec() }, 'the task already exists'],
  ['an ended task, cancelled', given(...running(), ev.completed()), { type: 'cancel' }, 'the task has already ended'],
  [
    'an ended task, failed again',
    given(ev.submitted(), ev.queued(), ev.cancelled()),
    { type: 'fail', reason: 'lost', message: 'x' },
    'the task has already ended',
  ],
  [
    'a task asked to stop, cancelled again (guard stopAllowed)',
    given(...running(), ev.stop('cancel')),
    { type: 'cancel' },
    'a stop (cancel) was already requested; the task ends when its trainer exits',
  ],
  [
    'a task being preempted, its preemption asked again (guard stopAllowed)',
    given(...running(), ev.stop('preempt')),
    { type: 'expire' },
    'a stop (preempt) was already requested; the task ends when its trainer exits',
  ],
  [
    'a task timing out, expired again (guard stopAllowed)',
    given(...running(), ev.stop('timeout')),
    { type: 'expire' },
    'a stop (timeout) was already requested; the task ends when its trainer exits',
  ],
  [
    'a running task, deleted',
    given(...running()),
    { type: 'delete' },
    'only finished tasks (COMPLETED, FAILED, CANCELLED) can be deleted; cancel it first',
  ],
  [
    'a queued task, deleted',
    given(ev.submitted(), ev.queued()),
    { type: 'delete' },
    'only finished tasks (COMPLETED, FAILED, CANCELLED) can be deleted; cancel it first',
  ],
  [
    'a deleted task, deleted again (guard notDeleted)',
    given(ev.submitted(), ev.queued(), ev.cancelled(), ev.deleted()),
    { type: 'delete' },
    'the task was already deleted',
  ],
  [
    'a second trainer for one attempt (guard notSpawned)',
    given(ev.submitted(), ev.assigned(), ev.spawned()),
    { type: 'recordSpawn', pid: 2, startTime: '2', runDir: '/r' },
    'a trainer was already recorded for this attempt',
  ],
  [
    // TRAINING has no TrainerSpawned transition at all: the refusal is the state's, not the guard's.
    'a training task, a trainer recorded again',
    given(...running()),
    { type: 'recordSpawn', pid: 2, startTime: '2', runDir: '/r' },
    'recordSpawn is not allowed while the task is TRAINING',
  ],
  [
    'a queued task, training started',
    given(ev.submitted(), ev.queued()),
    { type: 'startTraining' },
    'startTraining is not allowed while the task is QUEUED',
  ],
  [
    'a running task, assigned again',
    given(...running()),
    { type: 'assign', devices: [grant(0)], runnerId: 'r', grounds: null },
    'assign is not allowed while the task is TRAINING',
  ],
  [
    'a timeout failure without a timeout stop (guard failureAllowed)',
    given(...running()),
    { type: 'fail', reason: 'timeout', message: 'x' },
    'fail is not allowed while the task is TRAINING',
  ],
];

describe('refusals: the detail names the rule that refused', () => {
  for (const [name, state, command, detail] of cases) {
    it(`given ${name}, when ${command.type}, then "${detail}"`, () => {
      const err = when(state, command);
      expect(err).toBeInstanceOf(IllegalCommandError);
      expect((err as IllegalCommandError).detail).toBe(detail);
    });
  }
});
