// The torture suite's log and verdict checkers can fail, and say which invariant failed: each is fed a
// crafted stream of events (a bad log, a doubled delivery, an unfair queue) and must record
// exactly the violations named here, numbered as in docs/RELIABILITY.md.
import { describe, expect, it } from 'vitest';
import type { StoredTaskEvent, TaskEventType, TaskRecord } from '@trainyard/domain';
import {
  checkAcknowledged,
  checkCleanStop,
  checkFifo,
  checkNoneLeft,
  checkOutageHealth,
  checkOutageRefusal,
  checkOutcomes,
  checkSettled,
  checkSubmissions,
  checkTailDelivered,
  checkTaskStreams,
  LogTracker,
  reportDifferences,
  Violations,
  type PlannedOutcome,
} from './invariants';

function ev(streamId: string, version: number, position: number, type: TaskEventType): StoredTaskEvent {
  return {
    type,
    data: {},
    streamId,
    version,
    position: String(position),
    recordedAt: '2026-01-01T00:00:00.000Z',
    metadata: { actor: 'spec' },
  } as StoredTaskEvent;
}

/** Feed events to a fresh tracker, check every stream and FIFO; what fired, in order. */
function run(events: StoredTaskEvent[][], opts: { fifo?: boolean } = {}) {
  const v = new Violations(Date.now(), () => {});
  const tracker = new LogTracker();
  for (const batch of events) tracker.add(batch, v, 'spec');
  tracker.checkStreams(v, 'spec', true);
  const pairs = opts.fifo ? checkFifo(tracker, v, 'spec') : 0;
  return { fired: v.list.map((x) => x.invariant), messages: v.list.map((x) => x.message), pairs, tracker };
}

const honest = [
  ev('a', 1, 1, 'TaskSubmitted'),
  ev('a', 2, 3, 'TaskQueued'),
  ev('a', 3, 5, 'TaskAssigned'),
  ev('a', 4, 6, 'TrainerSpawned'),
  ev('a', 5, 9, 'TaskCompleted'),
  ev('a', 6, 10, 'TaskDeleted'),
];

describe('LogTracker and the stream checks (invariants 3 and 5)', () => {
  it('given an honest stream, delivered in two batches, nothing fires', () => {
    const r = run([honest.slice(0, 2), honest.slice(2)]);
    expect(r.fired).toEqual([]);
    expect(r.tracker.events).toBe(6);
    expect(r.tracker.terminalEvents('a').map((e) => e.type)).toEqual(['TaskCompleted']);
  });

  it('5: an event the tail delivers twice', () => {
    const r = run([honest.slice(0, 3), [honest[2]!]]);
    expect(r.fired).toEqual(['5']);
    expect(r.messages[0]).toMatch(/position 5 .* delivered twice/);
  });

  it('5: a version missing from the stream', () => {
    const r = run([[ev('a', 1, 1, 'TaskSubmitted'), ev('a', 3, 4, 'TaskAssigned')]]);
    expect(r.fired).toEqual(['5']);
    expect(r.messages[0]).toMatch(/not 1\.\.n contiguous \(1,3\)/);
  });

  it('5: a later version at an earlier position', () => {
    const r = run([[ev('a', 1, 7, 'TaskSubmitted'), ev('a', 2, 4, 'TaskQueued')]]);
    expect(r.fired).toEqual(['5']);
    expect(r.messages[0]).toMatch(/position 4 of v2 does not grow past 7/);
  });

  it('5: a stream that does not start with TaskSubmitted', () => {
    const r = run([[ev('a', 1, 1, 'TaskQueued')]]);
    expect(r.fired).toEqual(['5']);
    expect(r.messages[0]).toMatch(/starts with TaskQueued/);
  });

  it('3: an event after the terminal one (other than TaskDeleted)', () => {
    const r = run([[ev('a', 1, 1, 'TaskSubmitted'), ev('a', 2, 2, 'TaskCancelled'), ev('a', 3, 3, 'TaskAssigned')]]);
    expect(r.fired).toEqual(['3']);
    expect(r.messages[0]).toMatch(/TaskAssigned \(v3\) after its terminal event/);
  });

  it('3: two terminal events (the second is also after the first)', () => {
    const r = run([[ev('a', 1, 1, 'TaskSubmitted'), ev('a', 2, 2, 'TaskCompleted'), ev('a', 3, 3, 'TaskFailed')]]);
    expect(r.fired).toEqual(['3', '3']);
    expect(r.messages[1]).toMatch(/has 2 terminal events/);
  });

  it('a violation seen again at a later step is recorded once', () => {
    const v = new Violations(Date.now(), () => {});
    const tracker = new LogTracker();
    tracker.add([ev('a', 1, 1, 'TaskQueued')], v, 'step 1');
    tracker.checkStreams(v, 'step 1');
    tracker.checkStreams(v, 'step 2', true);
    expect(v.list.map((x) => [x.invariant, x.step])).toEqual([['5', 'step 1']]);
  });
});

describe('checkFifo (invariant 2)', () => {
  const submitted = (id: string, p: number) => ev(id, 1, p, 'TaskSubmitted');

  it('given tasks assigned in the order they queued, nothing fires and the pairs are counted', () => {
    const r = run(
      [
        [submitted('a', 1), submitted('b', 2), ev('a', 2, 3, 'TaskQueued'), ev('b', 2, 4, 'TaskQueued')],
        [ev('a', 3, 5, 'TaskAssigned'), ev('b', 3, 6, 'TaskAssigned')],
      ],
      { fifo: true },
    );
    expect(r.fired).toEqual([]);
    expect(r.pairs).toBe(1); // a assigned while b waited: fair, a queued first
  });

  it('2: a task queued later assigned while an earlier one still waits', () => {
    const r = run(
      [
        [submitted('a', 1), submitted('b', 2), ev('a', 2, 3, 'TaskQueued'), ev('b', 2, 4, 'TaskQueued')],
        [ev('b', 3, 5, 'TaskAssigned'), ev('a', 3, 6, 'TaskAssigned')],
      ],
      { fifo: true },
    );
    expect(r.fired).toEqual(['2']);
    expect(r.messages[0]).toMatch(/task b \(queued at 4\) was assigned at 5 while a, queued earlier at 3, still waited/);
  });

  it('2: a new submission that never queued takes a slot while a task waits', () => {
    const r = run([[submitted('a', 1), ev('a', 2, 2, 'TaskQueued'), submitted('c', 3), ev('c', 2, 4, 'TaskAssigned')]], { fifo: true });
    expect(r.fired).toEqual(['2']);
    expect(r.messages[0]).toMatch(/task c \(never queued\) was assigned at 4 while a/);
  });

  it('given the waiting task was cancelled first, a later assignment is fair', () => {
    const r = run(
      [[submitted('a', 1), ev('a', 2, 2, 'TaskQueued'), ev('a', 3, 3, 'TaskCancelled'), submitted('c', 4), ev('c', 2, 5, 'TaskAssigned')]],
      { fifo: true },
    );
    expect(r.fired).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------
// The final verdict

const record = (id: string, status: TaskRecord['status'], key: string, error: TaskRecord['error'] = null): TaskRecord =>
  ({ id, status, spec: { idempotencyKey: key }, error }) as TaskRecord;
const fresh = () => new Violations(Date.now(), () => {});
const fired = (v: Violations) => v.list.map((x) => x.invariant);

describe('checkSubmissions (invariant 3 over the task list)', () => {
  const sub = (key: string, id: string | null, acked = true) => ({ key, id, acked, attempts: 1 });

  it('given each acknowledged submission as one task, nothing fires and the tasks come back by id', () => {
    const v = fresh();
    const byId = checkSubmissions(
      [record('a', 'COMPLETED', 'k1')],
      [sub('k1', 'a'), { ...sub('k2', null, false), attempts: 0 }],
      v,
      'final',
    );
    expect(fired(v)).toEqual([]);
    expect([...byId.keys()]).toEqual(['a']);
  });

  it('3: an acknowledged task that is missing', () => {
    const v = fresh();
    checkSubmissions([], [sub('k1', 'a')], v, 'final');
    expect(fired(v)).toEqual(['3']);
    expect(v.list[0]!.message).toMatch(/acknowledged task a \(k1\) is missing/);
  });

  it('3: one submission that became two tasks', () => {
    const v = fresh();
    checkSubmissions([record('a', 'QUEUED', 'k1'), record('b', 'QUEUED', 'k1')], [sub('k1', 'a')], v, 'final');
    expect(fired(v)).toEqual(['3']);
    expect(v.list[0]!.message).toMatch(/submission k1 became 2 tasks: a, b/);
  });

  it('3: a task listed twice, and a task the run never submitted', () => {
    const v = fresh();
    checkSubmissions(
      [record('a', 'QUEUED', 'k1'), record('a', 'QUEUED', 'k1'), record('x', 'QUEUED', 'other')],
      [sub('k1', 'a')],
      v,
      'final',
    );
    expect(v.list.map((x) => [x.invariant, x.message])).toEqual([
      ['3', 'task a is listed twice'],
      ['3', 'submission k1 became 2 tasks: a, a'],
      ['3', 'task x was never submitted by this run'],
    ]);
  });
});

describe('checkTaskStreams (each task against its stream: 1, 3, 4)', () => {
  function check(tasks: TaskRecord[], events: StoredTaskEvent[]) {
    const v = fresh();
    const tracker = new LogTracker();
    tracker.add(events, v, 'final');
    checkTaskStreams(tasks, tracker, v, 'final');
    return v;
  }

  it('given a completed task with exactly its TaskCompleted, nothing fires', () => {
    expect(fired(check([record('a', 'COMPLETED', 'k')], honest))).toEqual([]);
  });

  it('4: a listed task with no events in the log', () => {
    const v = check([record('a', 'QUEUED', 'k')], []);
    expect(fired(v)).toEqual(['4']);
  });

  it('3: an ended task whose terminal event is not of its status', () => {
    const v = check([record('a', 'FAILED', 'k')], honest);
    expect(fired(v)).toEqual(['3']);
    expect(v.list[0]!.message).toMatch(/task a is FAILED with terminal events \[TaskCompleted\]/);
  });

  it('3: an open task whose stream has a terminal event', () => {
    const v = check([record('a', 'TRAINING', 'k')], honest);
    expect(fired(v)).toEqual(['3']);
    expect(v.list[0]!.message).toMatch(/task a is TRAINING but its stream has TaskCompleted/);
  });

  it('1: a task assigned twice', () => {
    const v = check(
      [record('a', 'PREPARING', 'k')],
      [ev('a', 1, 1, 'TaskSubmitted'), ev('a', 2, 2, 'TaskAssigned'), ev('a', 3, 3, 'TaskAssigned')],
    );
    expect(fired(v)).toEqual(['1']);
    expect(v.list[0]!.message).toMatch(/assigned\/spawned more than once/);
  });
});

describe('checkOutcomes (the chaos ends a task only in the ways it caused)', () => {
  const planned = (over: Partial<PlannedOutcome>): PlannedOutcome => ({
    key: 'k',
    id: 'a',
    acked: true,
    attempts: 1,
    expect: 'complete',
    cancel: null,
    trainerKilled: false,
    ...over,
  });
  const failed = (reason: 'exit' | 'signal'): TaskRecord['error'] => ({ reason, message: 'trainer ended', exitCode: null, signal: null });
  function check(sub: PlannedOutcome, t: TaskRecord) {
    const v = fresh();
    checkOutcomes([sub], new Map([[t.id, t]]), v, 'final');
    return v;
  }

  it('given the planned ends (and those a cancel or a trainer kill allows), nothing fires', () => {
    expect(fired(check(planned({}), record('a', 'COMPLETED', 'k')))).toEqual([]);
    expect(fired(check(planned({ expect: 'exit' }), record('a', 'FAILED', 'k', failed('exit'))))).toEqual([]);
    expect(fired(check(planned({ cancel: 'unknown' }), record('a', 'CANCELLED', 'k')))).toEqual([]);
    expect(fired(check(planned({ trainerKilled: true }), record('a', 'FAILED', 'k', failed('signal'))))).toEqual([]);
  });

  it('outcome: a task meant to complete that failed (a kill changed its outcome)', () => {
    const v = check(planned({}), record('a', 'FAILED', 'k', failed('exit')));
    expect(fired(v)).toEqual(['outcome']);
    expect(v.list[0]!.message).toMatch(/task a \(k, expected complete\) ended FAILED \(exit: trainer ended\)/);
  });

  it('outcome: an acknowledged cancel that did not end CANCELLED', () => {
    const v = check(planned({ cancel: 'acked' }), record('a', 'COMPLETED', 'k'));
    expect(fired(v)).toEqual(['outcome']);
  });
});

describe('reportDifferences (invariant 4, as the run reports a comparison with the log)', () => {
  it('4: each difference once, named by kind and id, with what differs', () => {
    const v = fresh();
    const diff = { kind: 'task-differs' as const, id: 'a', fields: ['attempt'], live: { attempt: 7 }, rebuilt: { attempt: 1 } };
    reportDifferences([diff], v, 'step 3');
    reportDifferences([diff], v, 'step 4', 'after stop: ');
    reportDifferences([{ kind: 'task-not-in-log', id: 'b' }], v, 'final', 'rebuild: ');
    expect(v.list.map((x) => [x.invariant, x.step, x.message])).toEqual([
      ['4', 'step 3', 'task-differs a fields attempt: live {"attempt":7} vs log {"attempt":1}'],
      ['4', 'final', 'rebuild: task-not-in-log b'],
    ]);
  });
});

describe('the run’s own checks at the end (5, 3, 6, 1, crash)', () => {
  const open = (id: string, status: TaskRecord['status']): TaskRecord =>
    ({
      id,
      status,
      devices: [{ deviceId: 'gpu0' }],
      trainer: null,
      runnerId: 'A',
      spec: { idempotencyKey: id },
      error: null,
    }) as unknown as TaskRecord;

  it('given a tail that delivered every committed event, an acknowledged run, nothing open or left, a clean stop, nothing fires', () => {
    const v = fresh();
    checkTailDelivered(honest, [...honest].reverse(), v, 'final');
    checkAcknowledged(
      [
        { key: 'k', id: 'a', acked: true, attempts: 2 },
        { key: 'l', id: null, acked: false, attempts: 0 },
      ],
      v,
      'settle',
    );
    checkSettled([], 60_000, v, 'settle');
    checkNoneLeft([], v, 'final');
    checkCleanStop('server A', { code: 0, signal: null }, v, 'final');
    expect(fired(v)).toEqual([]);
  });

  it('5: a committed event the tail never delivered', () => {
    const v = fresh();
    checkTailDelivered(
      honest,
      honest.filter((e) => e.type !== 'TaskAssigned'),
      v,
      'final',
    );
    expect(fired(v)).toEqual(['5']);
    expect(v.list[0]!.message).toBe('the log tail never delivered 1 committed event(s), e.g. TaskAssigned@5');
  });

  it('3: a submission sent but never acknowledged', () => {
    const v = fresh();
    checkAcknowledged([{ key: 'k', id: null, acked: false, attempts: 3 }], v, 'settle');
    expect(fired(v)).toEqual(['3']);
    expect(v.list[0]!.message).toBe('submission k was never acknowledged after 3 attempts');
  });

  it('6: a task still open after the settle time, once however often it is seen', () => {
    const v = fresh();
    checkSettled([open('a', 'TRAINING')], 60_000, v, 'settle');
    checkSettled([open('a', 'TRAINING')], 60_000, v, 'settle');
    expect(fired(v)).toEqual(['6']);
    expect(v.list[0]!.message).toBe('task a is still TRAINING 60 s after the last action (devices gpu0, trainer none, runner A)');
  });

  it('1: a trainer and a shepherd left alive after every task ended', () => {
    const v = fresh();
    checkNoneLeft(
      [
        { pid: 41, startTime: '1', kind: 'trainer', taskId: 'a' },
        { pid: 40, startTime: '1', kind: 'shepherd', taskId: 'a' },
      ],
      v,
      'final',
    );
    expect(fired(v)).toEqual(['1', '1']);
    expect(v.list[0]!.message).toBe('trainer pid 41 of task a is still alive after every task ended');
  });

  it('crash: a service that does not exit 0 on SIGTERM', () => {
    const v = fresh();
    checkCleanStop('server A', { code: null, signal: 'SIGKILL' }, v, 'final');
    checkCleanStop('server B', { code: 1, signal: null }, v, 'final');
    expect(fired(v)).toEqual(['crash', 'crash']);
    expect(v.list[0]!.message).toBe('server A did not stop cleanly on SIGTERM (exit null, signal SIGKILL)');
  });
});

describe('the database-outage checks (db-outage)', () => {
  const error = (code: string, message: string) => ({ ok: false, error: { code, message, httpStatus: 503, fieldErrors: null } }) as const;
  const answer = <T>(data: T) => ({ ok: true, data, httpStatus: 200 }) as const;

  it('given health saying the database is unreachable and procedures refused naming it, nothing fires', () => {
    const v = fresh();
    checkOutageHealth(answer({ ok: false, database: 'postgres', error: 'database unreachable: ECONNREFUSED' }), v, 'outage');
    checkOutageRefusal('tasks.list', error('SERVICE_UNAVAILABLE', 'the database is unreachable (ECONNREFUSED); try again'), v, 'outage');
    checkOutageRefusal('tasks.create', error('SERVICE_UNAVAILABLE', 'try again later'), v, 'outage', false);
    expect(fired(v)).toEqual([]);
  });

  it('db-outage: health that says ok, or fails itself, while the database is down', () => {
    const v = fresh();
    checkOutageHealth(answer({ ok: true, database: 'postgres', error: null }), v, 'outage');
    checkOutageHealth(error('INTERNAL_SERVER_ERROR', 'boom'), v, 'outage');
    expect(fired(v)).toEqual(['db-outage', 'db-outage']);
    expect(v.list.map((x) => x.message)).toEqual([
      'system.health while the database was down: ok=true, error=null',
      'system.health failed while the database was down: INTERNAL_SERVER_ERROR boom',
    ]);
  });

  it('db-outage: a procedure answered as if nothing was wrong, refused otherwise, or without naming the cause', () => {
    const v = fresh();
    checkOutageRefusal('queue.get', answer({ queued: [] }), v, 'outage');
    checkOutageRefusal('tasks.get', error('INTERNAL_SERVER_ERROR', 'database gone'), v, 'outage');
    checkOutageRefusal('events.list', error('SERVICE_UNAVAILABLE', 'try again later'), v, 'outage');
    checkOutageRefusal('tasks.create', answer({ id: 'a' }), v, 'outage', false);
    expect(fired(v)).toEqual(['db-outage', 'db-outage', 'db-outage', 'db-outage']);
    expect(v.list.map((x) => x.message)).toEqual([
      'queue.get while the database was down: answered as if nothing was wrong',
      'tasks.get while the database was down: INTERNAL_SERVER_ERROR: database gone',
      'events.list while the database was down: SERVICE_UNAVAILABLE: try again later',
      'tasks.create while the database was down: answered as if nothing was wrong',
    ]);
  });
});
