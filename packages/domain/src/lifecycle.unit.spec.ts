import { describe, expect, it } from 'vitest';
import {
  decide,
  decideLostDevices,
  EVENTS_LEAVING_RUNS_UNCHANGED,
  EVENTS_RECORDING_THEIR_POSITION,
  evolve,
  isActive,
  fold,
  IllegalCommandError,
  initialState,
  newTaskRecordAt,
  rebuildReadModels,
  stateFromRecord,
  statusOf,
  TASK_COMMAND_TYPES,
  toRecord,
  upcast,
  type StoredTaskEvent,
  type TaskCommand,
  type TaskCommandType,
  type TaskRecord,
  type TaskState,
} from '.';
import { ev, given, grant, spec, stored, T0, when } from '../test/given';

const commands: Record<TaskCommandType, TaskCommand> = {
  submit: { type: 'submit', taskId: 't1', spec: spec() },
  enqueue: { type: 'enqueue' },
  assign: { type: 'assign', devices: [grant(0)], runnerId: 'r1', grounds: null },
  recordSpawn: { type: 'recordSpawn', pid: 1, startTime: '1', runDir: '/tmp/r' },
  startTraining: { type: 'startTraining' },
  recordProgress: { type: 'recordProgress', epoch: 1, totalEpochs: 3, step: 5, totalSteps: 30, loss: 1.5 },
  recordArtifact: { type: 'recordArtifact', path: 'out/adapter' },
  cancel: { type: 'cancel', reason: 'changed my mind' },
  expire: { type: 'expire' },
  loseDevices: { type: 'loseDevices', message: 'gpu1 is no longer in the inventory' },
  preempt: { type: 'preempt', message: 'preempted for task t9 (urgent)' },
  recordCheckpoint: { type: 'recordCheckpoint', path: '/out/checkpoints/step-5', step: 5 },
  abandon: { type: 'abandon', runnerId: 'r1', message: 'instance r1 stopped renewing its lease', requeue: true },
  hold: { type: 'hold', reason: 'paused by alice' },
  release: { type: 'release' },
  recordExit: { type: 'recordExit', exitCode: 0, signal: null },
  fail: { type: 'fail', reason: 'lost', message: 'trainer gone' },
  delete: { type: 'delete' },
  handToSlurm: { type: 'handToSlurm', jobId: '42', runDir: '/runs/t1/attempt-1' },
};
// A second exit flavour: the table covers both a clean and a failed exit.
const failedExit: TaskCommand = { type: 'recordExit', exitCode: 1, signal: null, detail: 'Traceback' };

const states: Record<string, TaskState> = {
  NONE: initialState(),
  PENDING: given(ev.submitted()),
  QUEUED: given(ev.submitted(), ev.queued()),
  'QUEUED+held': given(ev.submitted(), ev.queued(), { type: 'TaskHeld', data: { reason: null } }),
  PREPARING: given(ev.submitted(), ev.assigned()),
  'PREPARING+spawned': given(ev.submitted(), ev.assigned(), ev.spawned()),
  TRAINING: given(ev.submitted(), ev.assigned(), ev.spawned(), ev.training()),
  'TRAINING+cancelling': given(ev.submitted(), ev.assigned(), ev.spawned(), ev.training(), ev.stop('cancel')),
  'TRAINING+timing-out': given(ev.submitted(), ev.assigned(), ev.spawned(), ev.training(), ev.stop('timeout')),
  'TRAINING+device-lost': given(ev.submitted(), ev.assigned(), ev.spawned(), ev.training(), ev.stop('device-lost')),
  'TRAINING+preempting': given(ev.submitted(), ev.assigned(), ev.spawned(), ev.training(), ev.stop('preempt')),
  COMPLETED: given(ev.submitted(), ev.assigned(), ev.spawned(), ev.training(), ev.completed()),
  FAILED: given(ev.submitted(), ev.assigned(), ev.spawned(), ev.failed()),
  CANCELLED: given(ev.submitted(), ev.queued(), ev.cancelled()),
  'CANCELLED+deleted': given(ev.submitted(), ev.queued(), ev.cancelled(), ev.deleted()),
};

const X = 'illegal';
type Row = Record<TaskCommandType | 'recordExit(1)', string>;
const running = (o: Partial<Row>): Row => ({
  submit: X,
  enqueue: X,
  assign: X,
  recordSpawn: 'TrainerSpawned',
  startTraining: 'TrainingStarted',
  recordProgress: 'ProgressRecorded',
  recordArtifact: 'ArtifactRecorded',
  cancel: 'StopRequested',
  expire: 'StopRequested',
  loseDevices: 'StopRequested',
  preempt: 'StopRequested',
  recordCheckpoint: 'CheckpointRecorded',
  abandon: 'TaskPreempted',
  hold: X,
  release: X,
  recordExit: 'TaskCompleted',
  'recordExit(1)': 'TaskFailed',
  fail: 'TaskFailed',
  delete: X,
  handToSlurm: X,
  ...o,
});
const only = (o: Partial<Row>): Row => ({
  submit: X,
  enqueue: X,
  assign: X,
  recordSpawn: X,
  startTraining: X,
  recordProgress: X,
  recordArtifact: X,
  cancel: X,
  expire: X,
  loseDevices: X,
  preempt: X,
  recordCheckpoint: X,
  abandon: X,
  hold: X,
  release: X,
  recordExit: X,
  'recordExit(1)': X,
  fail: X,
  delete: X,
  handToSlurm: X,
  ...o,
});

// The full transition table: every (state, command) pair, legal and illegal.
const table: Record<keyof typeof states, Row> = {
  NONE: only({ submit: 'TaskSubmitted' }),
  PENDING: only({ enqueue: 'TaskQueued', assign: 'TaskAssigned', cancel: 'TaskCancelled' }),
  QUEUED: only({ assign: 'TaskAssigned', cancel: 'TaskCancelled', hold: 'TaskHeld', handToSlurm: 'TaskHandedToSlurm' }),
  'QUEUED+held': only({ cancel: 'TaskCancelled', release: 'TaskReleased' }),
  PREPARING: running({}),
  'PREPARING+spawned': running({ recordSpawn: X }),
  TRAINING: running({ recordSpawn: X, startTraining: X }),
  'TRAINING+cancelling': running({
    abandon: 'TaskCancelled',
    recordSpawn: X,
    startTraining: X,
    cancel: X,
    expire: X,
    loseDevices: X,
    preempt: X,
    recordExit: 'TaskCancelled',
    'recordExit(1)': 'TaskCancelled',
  }),
  'TRAINING+timing-out': running({
    abandon: 'TaskFailed',
    recordSpawn: X,
    startTraining: X,
    expire: X,
    loseDevices: X,
    preempt: X,
    recordExit: 'TaskFailed',
    'recordExit(1)': 'TaskFailed',
  }),
  'TRAINING+device-lost': running({
    abandon: 'TaskFailed',
    recordSpawn: X,
    startTraining: X,
    expire: X,
    loseDevices: X,
    preempt: X,
    recordExit: 'TaskFailed',
    'recordExit(1)': 'TaskFailed',
  }),
  'TRAINING+preempting': running({
    recordSpawn: X,
    startTraining: X,
    expire: X,
    loseDevices: X,
    preempt: X,
    hold: 'TaskHeld',
    recordExit: 'TaskPreempted',
    'recordExit(1)': 'TaskPreempted',
  }),
  COMPLETED: only({ delete: 'TaskDeleted' }),
  FAILED: only({ delete: 'TaskDeleted' }),
  CANCELLED: only({ delete: 'TaskDeleted' }),
  'CANCELLED+deleted': only({}),
};

describe('transition table', () => {
  const cases = Object.entries(table).flatMap(([stateName, row]) =>
    Object.entries(row).map(([cmd, expected]) => ({ stateName, cmd, expected })),
  );
  it('covers every command in every state', () => {
    for (const row of Object.values(table)) {
      expect(Object.keys(row).sort()).toEqual([...TASK_COMMAND_TYPES, 'recordExit(1)'].sort());
    }
  });
  it.each(cases)('$stateName + $cmd -> $expected', ({ stateName, cmd, expected }) => {
    const state = states[stateName]!;
    const command = cmd === 'recordExit(1)' ? failedExit : commands[cmd as TaskCommandType];
    const result = when(state, command);
    if (expected === X) {
      expect(result).toBeInstanceOf(IllegalCommandError);
      const err = result as IllegalCommandError;
      expect(err.taskId).toBe('t1');
      expect(err.command).toBe(command.type);
      expect(err.status).toBe(statusOf(state));
      expect(err.message).toContain('t1');
    } else {
      expect(result).toEqual([expected]);
    }
  });
});

describe('which events write their own position into the record', () => {
  const legal = Object.entries(table).flatMap(([stateName, row]) =>
    Object.entries(row)
      .filter(([, expected]) => expected !== X)
      .map(([cmd]) => ({ stateName, cmd })),
  );
  // A store writes a record before its events' positions are known only where this holds.
  it.each(legal)(
    '$stateName + $cmd: the record moves with the positions only if an event is in EVENTS_RECORDING_THEIR_POSITION',
    ({ stateName, cmd }) => {
      const state = states[stateName]!;
      const events = decide(state, cmd === 'recordExit(1)' ? failedExit : commands[cmd as TaskCommandType], 't1');
      const recordAt = (position: number) => JSON.stringify(toRecord(fold(stored(events, 't1', state.version, position), state)));
      expect(recordAt(100) !== recordAt(5_000)).toBe(events.some((e) => EVENTS_RECORDING_THEIR_POSITION.has(e.type)));
    },
  );
});

describe('which events leave a run as it was (what the recent runs read still holds after them)', () => {
  const legal = Object.entries(table).flatMap(([stateName, row]) =>
    Object.entries(row)
      .filter(([, expected]) => expected !== X)
      .map(([cmd]) => ({ stateName, cmd })),
  );
  const run = (r: TaskRecord) => ({
    owner: r.spec.owner,
    gpus: r.spec.resources.gpus,
    startedAt: r.startedAt,
    finishedAt: r.finishedAt,
    active: isActive(r.status),
  });
  it.each(legal)('$stateName + $cmd: a run changes only if an event is not in EVENTS_LEAVING_RUNS_UNCHANGED', ({ stateName, cmd }) => {
    const state = states[stateName]!;
    const events = decide(state, cmd === 'recordExit(1)' ? failedExit : commands[cmd as TaskCommandType], 't1');
    if (!events.every((e) => EVENTS_LEAVING_RUNS_UNCHANGED.has(e.type))) return;
    // Each event a second later than the one before (stored() spaces them so): a start or an end would move.
    const after = toRecord(fold(stored(events, 't1', state.version, 100), state));
    expect(run(after)).toEqual(run(toRecord(state)));
  });
  it('the set holds the reports a running trainer sends most', () => {
    for (const type of ['ProgressRecorded', 'CheckpointRecorded', 'ArtifactRecorded'] as const)
      expect(EVENTS_LEAVING_RUNS_UNCHANGED.has(type)).toBe(true);
  });
});

describe("a new task's record with its events' positions filled in", () => {
  // A store writes a new task's row folded at provisional positions, the real ones filled in
  // from the log (sql/tasks.ts), and hands its caller the same record built here.
  it.each([
    ['submitted', [ev.submitted()]],
    ['submitted and queued', [ev.submitted(), ev.queued()]],
  ])('given a task %s at provisional positions, when given the positions stored, then it is the fold of the stored events', (_, events) => {
    const at = (position: number) => toRecord(fold(stored(events, 't1', 0, position)));
    const filled = newTaskRecordAt(at(0), stored(events, 't1', 0, 4_999));
    expect(filled).toEqual(at(4_999));
    expect(filled).not.toEqual(at(0));
  });
});

describe('decide/evolve: given events, when command, then events', () => {
  it('cancelling a COMPLETED task is refused with task, status and command named', () => {
    const err = when(states.COMPLETED!, { type: 'cancel' }) as IllegalCommandError;
    expect(err.message).toMatch(/cannot cancel task t1: it is COMPLETED/);
  });

  it('starting (assigning) a CANCELLED task is refused', () => {
    const err = when(states.CANCELLED!, commands.assign) as IllegalCommandError;
    expect(err).toBeInstanceOf(IllegalCommandError);
    expect(err.status).toBe('CANCELLED');
  });

  it('a queued cancel is immediate; a running cancel waits for the trainer to exit', () => {
    expect(when(states.QUEUED!, { type: 'cancel' })).toEqual(['TaskCancelled']);
    const stop = decide(states.TRAINING!, { type: 'cancel', reason: 'oops' });
    expect(stop).toEqual([{ type: 'StopRequested', data: { reason: 'cancel', message: 'oops' } }]);
  });

  it('a timeout turns any exit into FAILED(timeout)', () => {
    const [e] = decide(states['TRAINING+timing-out']!, { type: 'recordExit', exitCode: null, signal: 'SIGTERM' });
    expect(e).toMatchObject({ type: 'TaskFailed', data: { reason: 'timeout', signal: 'SIGTERM' } });
  });

  it('a non-zero exit fails with the code and the detail; a signal names the signal', () => {
    const [a] = decide(states.TRAINING!, { type: 'recordExit', exitCode: 2, signal: null, detail: 'CUDA OOM' });
    expect(a).toMatchObject({ type: 'TaskFailed', data: { reason: 'exit', exitCode: 2 } });
    expect((a!.data as { message: string }).message).toBe('trainer exited with code 2: CUDA OOM');
    const [b] = decide(states.TRAINING!, { type: 'recordExit', exitCode: null, signal: 'SIGKILL' });
    expect(b).toMatchObject({ type: 'TaskFailed', data: { reason: 'signal', signal: 'SIGKILL' } });
  });

  it('attempt counts assignments', () => {
    const [e] = decide(states.QUEUED!, commands.assign);
    expect(e).toMatchObject({ type: 'TaskAssigned', data: { attempt: 1 } });
  });

  it('fail(timeout) is only legal after a timeout stop', () => {
    expect(when(states.TRAINING!, { type: 'fail', reason: 'timeout', message: 'x' })).toBeInstanceOf(IllegalCommandError);
    expect(when(states['TRAINING+timing-out']!, { type: 'fail', reason: 'timeout', message: 'x' })).toEqual(['TaskFailed']);
  });
});

describe('the task record', () => {
  it('takes every time from the events, none from a clock', () => {
    const s = given(ev.submitted(), ev.queued(), ev.assigned(1), ev.spawned(), ev.training(), ev.completed());
    const r = toRecord(s);
    const at = (i: number) => new Date(T0 + i * 1000).toISOString();
    expect(r).toMatchObject({
      id: 't1',
      status: 'COMPLETED',
      createdAt: at(0),
      queuedAt: at(1),
      queuedPosition: '2',
      startedAt: at(2),
      trainingAt: at(4),
      finishedAt: at(5),
      deadlineAt: new Date(T0 + 2000 + 6 * 3_600_000).toISOString(),
      devices: [],
      attempt: 1,
      trainer: { pid: 4242, startTime: '1234', runDir: '/tmp/run' },
      version: 6,
    });
    expect(r.progress.percent).toBe(100);
  });

  it('records progress, artifacts and the stop request', () => {
    const events = stored([
      ev.submitted(),
      ev.assigned(),
      ev.spawned(),
      ev.training(),
      { type: 'ProgressRecorded', data: { epoch: 1, totalEpochs: 3, step: 10, totalSteps: 40, loss: 0.9, learningRate: 1e-4 } },
      { type: 'ArtifactRecorded', data: { path: 'out/a' } },
      ev.stop('cancel'),
    ]);
    const r = toRecord(fold(events));
    // The learning rate belongs to the series (tasks.metrics), not to the record.
    expect(r.progress).toEqual({ percent: 25, epoch: 1, totalEpochs: 3, step: 10, totalSteps: 40, loss: 0.9 });
    expect(r.artifacts).toEqual(['out/a']);
    expect(r.stop).toMatchObject({ reason: 'cancel', by: 'alice' });
    expect(r.devices.map((g) => g.deviceId)).toEqual(['gpu0']);
  });

  it('restores the decision state from a projected record', () => {
    const s = given(ev.submitted(), ev.assigned(), ev.spawned());
    const restored = stateFromRecord(toRecord(s));
    expect(statusOf(restored)).toBe('PREPARING');
    expect(when(restored, commands.recordSpawn)).toBeInstanceOf(IllegalCommandError);
    expect(when(restored, commands.startTraining)).toEqual(['TrainingStarted']);
    expect(toRecord(restored)).toEqual(toRecord(s));
  });

  it('refuses to fold an event the machine does not accept (a corrupt log is loud)', () => {
    const [bad] = stored([ev.completed()]);
    expect(() => evolve(states.QUEUED!, bad!)).toThrow(/not legal in state QUEUED/);
  });
});

describe('read models from the log', () => {
  it('folds streams into tasks and device holders', () => {
    const log = [
      ...stored([ev.submitted(), ev.assigned(0)], 'a', 0, 0),
      ...stored([ev.submitted(), ev.queued()], 'b', 0, 2),
      ...stored([ev.submitted(), ev.assigned(1), ev.failed()], 'c', 0, 4),
    ];
    const rm = rebuildReadModels(log);
    expect(rm.deviceHolders).toEqual([{ deviceId: 'gpu0', taskId: 'a', memoryMb: 81_920, exclusive: true }]);
    expect(rm.tasks.get('b')!.status).toBe('QUEUED');
    expect(rm.tasks.get('c')!.status).toBe('FAILED');
  });
});

describe('error messages say what is true', () => {
  it('cancelling a task that already ended says it ended (not that a stop is pending)', () => {
    const s = given(ev.submitted(), ev.assigned(), ev.spawned(), ev.training(), ev.stop('cancel'), ev.cancelled());
    const err = when(s, { type: 'cancel' }) as IllegalCommandError;
    expect(err.message).toBe('cannot cancel task t1: it is CANCELLED; the task has already ended');
  });
});

describe('events written before schema 2 (upcast)', () => {
  const v1 = (e: StoredTaskEvent): StoredTaskEvent => ({ ...e, metadata: { ...e.metadata, schemaVersion: 1 } });
  it('a v1 TaskSubmitted gets the default resources; a v1 TaskAssigned its slot as one whole GPU', () => {
    const { resources: _dropped, ...oldSpec } = spec();
    const [sub, asg] = stored([
      { type: 'TaskSubmitted', data: { spec: oldSpec as never } },
      { type: 'TaskAssigned', data: { slotId: 1, gpuIndex: 3, runnerId: 'r1', attempt: 1 } as never },
    ]).map(v1);
    const r = toRecord(fold([upcast(sub!), upcast(asg!)]));
    expect(r.spec.resources).toEqual({ gpus: 1, memoryMb: null, shared: false, memorySource: null });
    expect(r.devices).toEqual([{ deviceId: 'gpu3', gpuIndex: 3, uuid: null, migProfile: null, memoryMb: 0, exclusive: true }]);
  });
  it('a v2 event passes unchanged', () => {
    const [e] = stored([ev.assigned(2)]);
    expect(upcast(e!)).toBe(e);
  });
});

describe('a device leaves the inventory (decideLostDevices)', () => {
  const running = (id: string, gpu: number, stop?: 'cancel') =>
    toRecord(given(ev.submitted(), ev.assigned(gpu), ev.spawned(), ev.training(), ...(stop ? [ev.stop(stop)] : [])));
  it('given a running task on a device no longer present, then it is stopped, naming the device; others are left alone', () => {
    const a = { ...running('a', 0), id: 'a' };
    const b = { ...running('b', 1), id: 'b' };
    const out = decideLostDevices(new Set(['gpu0']), [a, b]);
    expect(out).toEqual([
      { taskId: 'b', command: { type: 'loseDevices', message: expect.stringMatching(/^gpu1 is no longer in the inventory/) } },
    ]);
  });
  it('a task already stopping is left to end as it is', () => {
    expect(decideLostDevices(new Set(), [running('a', 0, 'cancel')])).toEqual([]);
  });
  it('when its trainer exits, even with code 0, it fails as lost with the reason', () => {
    const s = given(ev.submitted(), ev.assigned(1), ev.spawned(), ev.training());
    const [stop] = decide(s, { type: 'loseDevices', message: 'gpu1 is no longer in the inventory' });
    const after = given(ev.submitted(), ev.assigned(1), ev.spawned(), ev.training(), stop!);
    expect(decide(after, { type: 'recordExit', exitCode: 0, signal: null })).toEqual([
      { type: 'TaskFailed', data: { reason: 'lost', message: 'gpu1 is no longer in the inventory', exitCode: 0, signal: null } },
    ]);
  });
});

describe('preemption: checkpoint, stop, requeue in its place', () => {
  it('given a running task asked to preempt, when its user cancels it, then the cancel overrules the preemption: the exit cancels it, nothing is requeued', () => {
    const s = given(ev.submitted(), ev.assigned(), ev.spawned(), ev.training(), ev.stop('preempt'));
    const [stop] = decide(s, { type: 'cancel', reason: 'not needed any more' });
    expect(stop).toMatchObject({ type: 'StopRequested', data: { reason: 'cancel', message: 'not needed any more' } });
    const cancelling = fold(stored([stop!], 't1', 5, 15), s);
    expect(decide(cancelling, { type: 'recordExit', exitCode: 143, signal: null })).toMatchObject([
      { type: 'TaskCancelled', data: { reason: 'not needed any more' } },
    ]);
    // And a second cancel is refused as before.
    expect(() => decide(cancelling, { type: 'cancel' })).toThrow('a stop (cancel) was already requested');
  });

  it('given a running task that reported a checkpoint and was asked to preempt, when its trainer exits, then it is QUEUED again in its place, holding nothing, with its checkpoint', () => {
    const log = stored(
      [
        ev.submitted(),
        ev.queued(),
        ev.assigned(1),
        ev.spawned(),
        ev.training(),
        { type: 'CheckpointRecorded', data: { path: '/out/checkpoints/step-40', step: 40 } },
        ev.stop('preempt'),
      ],
      't1',
    );
    const s = fold(log);
    const [preempted] = decide(s, { type: 'recordExit', exitCode: 143, signal: null });
    expect(preempted).toEqual({
      type: 'TaskPreempted',
      data: { exitCode: 143, signal: null, checkpoint: { path: '/out/checkpoints/step-40', step: 40 } },
    });
    const r = toRecord(fold(stored([preempted!], 't1', log.length, log.length + 10), s));
    expect(r).toMatchObject({
      status: 'QUEUED',
      devices: [],
      trainer: null,
      stop: null,
      preemptions: 1,
      queuedPosition: log[1]!.position,
      checkpoint: { path: '/out/checkpoints/step-40', step: 40 },
    });
    // Its next attempt is assigned as any queued task.
    expect(decide(fold(stored([preempted!], 't1', log.length, log.length + 10), s), commands.assign).map((e) => e.type)).toEqual([
      'TaskAssigned',
    ]);
  });
  it('a task that never queued goes back in the place of its submission', () => {
    const log = stored([ev.submitted(), ev.assigned(0), ev.spawned(), ev.stop('preempt')], 't2');
    const s = fold(log);
    const [preempted] = decide(s, { type: 'recordExit', exitCode: null, signal: 'SIGTERM' });
    const r = toRecord(fold(stored([preempted!], 't2', log.length, log.length + 10), s));
    expect([r.status, r.queuedPosition, r.checkpoint]).toEqual(['QUEUED', log[0]!.position, null]);
  });
});

describe('pause and resume (hold, release)', () => {
  it('a paused queued task keeps its place, is not assigned, and is assigned again once released', () => {
    const log = stored([ev.submitted(), ev.queued(), { type: 'TaskHeld', data: { reason: 'paused' } }], 't1');
    const held = fold(log);
    expect(toRecord(held)).toMatchObject({ status: 'QUEUED', held: true, queuedPosition: log[1]!.position });
    expect(when(held, commands.assign)).toBeInstanceOf(IllegalCommandError);
    const released = fold(stored([{ type: 'TaskReleased', data: {} }], 't1', log.length, log.length + 5), held);
    expect(toRecord(released).held).toBe(false);
    expect(when(released, commands.assign)).toEqual(['TaskAssigned']);
  });
  it('a running task is paused by preempting it: held while it stops, QUEUED and held after its exit', () => {
    const log = stored(
      [
        ev.submitted(),
        ev.queued(),
        ev.assigned(),
        ev.spawned(),
        ev.training(),
        ev.stop('preempt'),
        { type: 'TaskHeld', data: { reason: null } },
      ],
      't2',
    );
    const s = fold(log);
    const [preempted] = decide(s, { type: 'recordExit', exitCode: 143, signal: null });
    const r = toRecord(fold(stored([preempted!], 't2', log.length, log.length + 5), s));
    expect([r.status, r.held, r.devices]).toEqual(['QUEUED', true, []]);
  });
});
