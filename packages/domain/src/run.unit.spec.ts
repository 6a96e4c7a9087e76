// The run decider, given/when/then: given a task and what was observed of its run, when this
// is observed, then these commands (appended by whom) and these effects.
import { describe, expect, it } from 'vitest';
import {
  decideRecovery,
  IllegalCommandError,
  linesMayHaveFailed,
  TaskNotFoundError,
  withLastOutput,
  type RunFacts,
  type RunObservation,
} from '.';
import { commandsOf, effectsOf, ev, givenRun, record, whenRun } from '../test/given';

const preparing = record(ev.submitted(), ev.assigned());
const spawned = record(ev.submitted(), ev.assigned(), ev.spawned());
const training = record(ev.submitted(), ev.assigned(), ev.spawned(), ev.training());
const cancelling = record(ev.submitted(), ev.assigned(), ev.spawned(), ev.training(), ev.stop('cancel'));
const facts = (over: Partial<RunFacts> = {}): RunFacts => ({ trainerFile: null, exitFile: null, trainerAlive: false, ...over });
const line = (text: string, over: Partial<Extract<RunObservation, { type: 'line' }>> = {}): RunObservation => ({
  type: 'line',
  line: { seq: 7, stream: 'stdout', line: text, t: 1000 },
  ...over,
});
const launchedAndRecorded: RunObservation[] = [
  { type: 'recovery', task: preparing, facts: facts() },
  { type: 'launched', pid: 4242, startTime: '1234' },
  { type: 'committed', command: 'recordSpawn', task: spawned },
];

describe('decideRun: recovery (given the record and the run folder, then the step)', () => {
  it('nothing started yet: launch, reported as launched', () => {
    const d = whenRun(givenRun(preparing), { type: 'recovery', task: preparing, facts: facts() });
    expect([commandsOf(d), effectsOf(d), d.outcome]).toEqual([[], ['launch'], 'launched']);
  });
  it('the shepherd reported a trainer the record lacks: record the spawn, then look again with the new record', () => {
    const run = givenRun(preparing);
    const d = whenRun(run, { type: 'recovery', task: preparing, facts: facts({ trainerFile: { pid: 7, startTime: '1' } }) });
    expect(d.commands).toEqual([
      { command: { type: 'recordSpawn', pid: 7, startTime: '1', runDir: '/runs/t1/attempt-1' }, actor: 'runner' },
    ]);
    const next = whenRun(d.run, { type: 'committed', command: 'recordSpawn', task: spawned });
    expect(next.effects).toEqual([{ kind: 'recover', task: spawned }]);
  });
  it('the spawn could not be recorded (no trainer on the record): release, failed', () => {
    const run = givenRun(preparing, { type: 'recovery', task: preparing, facts: facts({ trainerFile: { pid: 7, startTime: '1' } }) });
    const d = whenRun(run, { type: 'committed', command: 'recordSpawn', task: null });
    expect([effectsOf(d), d.outcome, d.run.phase]).toEqual([['release'], 'failed', 'ended']);
  });
  it('a shepherd is starting: wait for it, then look again', () => {
    const d = whenRun(givenRun(preparing), { type: 'recovery', task: preparing, facts: facts({ shepherdAlive: true }) });
    expect(effectsOf(d)).toEqual(['log info', 'awaitShepherd', 'recover']);
  });
  it('the shepherd could not start the trainer: fail as a spawn error, then release', () => {
    const d = whenRun(givenRun(preparing), {
      type: 'recovery',
      task: preparing,
      facts: facts({ exitFile: { code: null, signal: null, error: 'ENOENT' } }),
    });
    expect(d.commands).toEqual([{ command: { type: 'fail', reason: 'spawn', message: 'ENOENT' }, actor: 'runner' }]);
    expect([effectsOf(d), d.outcome]).toEqual([['release'], 'failed']);
  });
  it('the recorded trainer runs: follow it (re-attached), with its pid and recorded artifacts', () => {
    const d = whenRun(givenRun(training), { type: 'recovery', task: training, facts: facts({ trainerAlive: true }) });
    expect([commandsOf(d), effectsOf(d), d.outcome, d.run.pid, d.run.phase]).toEqual([[], ['follow'], 'reattached', 4242, 'following']);
  });
  it('the recorded trainer ended unwatched: follow to its end (settled)', () => {
    const d = whenRun(givenRun(training), { type: 'recovery', task: training, facts: facts({ exitFile: { code: 0, signal: null } }) });
    expect([effectsOf(d), d.outcome]).toEqual([['follow'], 'settled']);
  });
  it('the recorded trainer is gone without a trace: fail as lost by recovery, quoting the last output', () => {
    const d = whenRun(givenRun(training), { type: 'recovery', task: training, facts: facts() });
    expect(commandsOf(d)).toEqual(['fail by recovery']);
    expect(d.commands[0]).toMatchObject({
      command: { reason: 'lost', message: expect.stringMatching(/trainer process 4242 is gone/) },
      quoteLastLines: 3,
    });
    expect([effectsOf(d), d.outcome]).toEqual([['release'], 'failed']);
  });
  it('uses the recovery rule it is given (the simulation plants bugs this way)', () => {
    const d = whenRun(
      givenRun(training),
      { type: 'recovery', task: training, facts: facts({ trainerAlive: true }) },
      {
        decideRecovery: (task, f) => (f.trainerAlive ? { kind: 'launch' } : decideRecovery(task, f)),
      },
    );
    expect(effectsOf(d)).toEqual(['launch']);
  });
});

describe('decideRun: launch', () => {
  it('the trainer started: record its spawn by the runner', () => {
    const run = givenRun(preparing, { type: 'recovery', task: preparing, facts: facts() });
    const d = whenRun(run, { type: 'launched', pid: 4242, startTime: '1234' });
    expect(d.commands).toEqual([
      { command: { type: 'recordSpawn', pid: 4242, startTime: '1234', runDir: '/runs/t1/attempt-1' }, actor: 'runner' },
    ]);
    expect([d.run.pid, d.run.phase]).toEqual([4242, 'launching']);
  });
  it('its spawn is recorded: follow it', () => {
    const run = givenRun(preparing, ...launchedAndRecorded.slice(0, 2));
    const d = whenRun(run, { type: 'committed', command: 'recordSpawn', task: spawned });
    expect([commandsOf(d), effectsOf(d), d.run.phase]).toEqual([[], ['follow'], 'following']);
  });
  it('a stop asked for before the pid was known: follow, then SIGTERM and arm the kill', () => {
    const run = givenRun(preparing, { type: 'recovery', task: preparing, facts: facts() }, { type: 'stop' });
    expect([run.stopRequested, run.killArmed]).toEqual([true, false]);
    const d = whenRun(
      givenRun(
        preparing,
        { type: 'recovery', task: preparing, facts: facts() },
        { type: 'stop' },
        { type: 'launched', pid: 4242, startTime: '1' },
      ),
      {
        type: 'committed',
        command: 'recordSpawn',
        task: spawned,
      },
    );
    expect(effectsOf(d)).toEqual(['follow', 'log info', 'SIGTERM', 'armKill']);
  });
  it('the record of the spawn says stop (cancelled meanwhile): follow, then SIGTERM', () => {
    const run = givenRun(preparing, ...launchedAndRecorded.slice(0, 2));
    const d = whenRun(run, { type: 'committed', command: 'recordSpawn', task: cancelling });
    expect(effectsOf(d)).toEqual(['follow', 'log info', 'SIGTERM', 'armKill']);
  });
  it('the trainer could not be started: fail as a spawn error, release only after', () => {
    const d = whenRun(givenRun(preparing), { type: 'launchFailed', message: 'dataset refused' });
    expect(d.commands).toEqual([{ command: { type: 'fail', reason: 'spawn', message: 'dataset refused' }, actor: 'runner' }]);
    expect(effectsOf(d)).toEqual(['release']);
  });
});

describe('decideRun: output lines', () => {
  const following = givenRun(preparing, ...launchedAndRecorded);
  it('a plain line is stored', () => {
    const d = whenRun(following, line('hello'));
    expect([commandsOf(d), d.effects]).toEqual([[], [{ kind: 'storeLine', line: { seq: 7, stream: 'stdout', line: 'hello', t: 1000 } }]]);
  });
  it('the training phase while PREPARING: startTraining (output before it stored first), then the line', () => {
    const d = whenRun(following, line('{"type":"phase"}', { message: { type: 'phase', phase: 'training' } }));
    expect(d.commands).toEqual([{ command: { type: 'startTraining' }, actor: 'trainer', flushFirst: true }]);
    expect(effectsOf(d)).toEqual(['storeLine']);
  });
  it('the training phase again once TRAINING: only stored', () => {
    const run = givenRun(preparing, ...launchedAndRecorded, { type: 'committed', command: 'startTraining', task: training });
    expect(commandsOf(whenRun(run, line('p', { message: { type: 'phase', phase: 'training' } })))).toEqual([]);
  });
  it('a protocol message on stderr is a plain line', () => {
    const d = whenRun(following, {
      type: 'line',
      message: { type: 'phase', phase: 'training' },
      line: { seq: 7, stream: 'stderr', line: 'p', t: 1 },
    });
    expect(commandsOf(d)).toEqual([]);
  });
  it('progress the throttle lets through is recorded (absent fields as null); other progress only stored', () => {
    const m = { type: 'progress' as const, epoch: 1, step: 5, totalSteps: 10 };
    const d = whenRun(following, line('p', { message: m, progressDue: true }));
    expect(d.commands).toEqual([
      {
        command: { type: 'recordProgress', epoch: 1, totalEpochs: null, step: 5, totalSteps: 10, loss: null, learningRate: null },
        actor: 'trainer',
      },
    ]);
    expect(commandsOf(whenRun(following, line('p', { message: m, progressDue: false })))).toEqual([]);
  });
  it('a new artifact is recorded once; a repeat only stored', () => {
    const a: RunObservation = line('a', { message: { type: 'artifact', path: 'x' }, artifact: { ok: true, path: '/out/x' } });
    const d = whenRun(following, a);
    expect([commandsOf(d), d.run.artifacts]).toEqual([['recordArtifact by trainer'], ['/out/x']]);
    expect(commandsOf(whenRun(d.run, a))).toEqual([]);
  });
  it('a refused artifact: a warning line in its place, the service log told once per run', () => {
    const a: RunObservation = line('a', { message: { type: 'artifact', path: '../x' }, artifact: { ok: false, reason: 'outside' } });
    const d = whenRun(following, a);
    expect(d.effects).toEqual([
      { kind: 'log', level: 'warn', message: 'task t1: refused an artifact its trainer reported: outside' },
      { kind: 'storeLine', line: { seq: 7, stream: 'stderr', line: '[trainyard] artifact refused (outside): a', t: 1000 } },
    ]);
    expect(effectsOf(whenRun(d.run, a))).toEqual(['storeLine']);
  });
  it("read with the exit: progress, a checkpoint and an artifact go in the exit's transaction; the phase still goes first", () => {
    const progress = { type: 'progress' as const, epoch: 1, step: 10, totalSteps: 10, loss: 0.5 };
    const reports: RunObservation[] = [
      line('p', { message: progress, progressDue: true, final: true }),
      line('c', { message: { type: 'checkpoint', path: '/out/ckpt', step: 10 }, final: true }),
      line('a', { message: { type: 'artifact', path: 'x' }, artifact: { ok: true, path: '/out/x' }, final: true }),
    ];
    for (const obs of reports) {
      const d = whenRun(following, obs);
      expect(d.commands.map((c) => [c.command.type, c.withExit])).toEqual([[expect.any(String), true]]);
      expect(effectsOf(d)).toEqual(['storeLine']);
    }
    const phase = whenRun(following, line('{"type":"phase"}', { message: { type: 'phase', phase: 'training' }, final: true }));
    expect(phase.commands).toEqual([{ command: { type: 'startTraining' }, actor: 'trainer', flushFirst: true }]);
    // Read before the exit was there: each report on its own, as always.
    expect(whenRun(following, line('p', { message: progress, progressDue: true })).commands[0]).not.toHaveProperty('withExit');
  });
});

describe('decideRun: exit', () => {
  const following = givenRun(preparing, ...launchedAndRecorded);
  it('a clean exit: recordExit with the last lines, then release and remove the dataset copy', () => {
    const d = whenRun(following, { type: 'exited', exit: { code: 0, signal: null } });
    expect(d.commands).toEqual([{ command: { type: 'recordExit', exitCode: 0, signal: null }, actor: 'runner', withLines: true }]);
    expect([effectsOf(d), d.run.phase]).toEqual([['release', 'removeDatasetCopy'], 'ended']);
  });
  it('a failed exit (a code, or a signal) is recorded with the stored output as its detail', () => {
    for (const exit of [
      { code: 1, signal: null },
      { code: null, signal: 'SIGSEGV' },
    ]) {
      const d = whenRun(following, { type: 'exited', exit });
      expect(d.commands).toEqual([
        {
          command: { type: 'recordExit', exitCode: exit.code, signal: exit.signal },
          actor: 'runner',
          withLines: true,
          withFailureDetail: true,
        },
      ]);
    }
  });
  it('a trainer that could not start: fail as a spawn error', () => {
    const d = whenRun(following, { type: 'exited', exit: { code: null, signal: null, error: 'ENOENT' } });
    expect(d.commands[0]!.command).toEqual({ type: 'fail', reason: 'spawn', message: 'ENOENT' });
  });
  it('an exit refused with its last lines (a line the database refused): recorded again on its own, saying so', () => {
    const exit = {
      command: { type: 'recordExit', exitCode: 1, signal: null, detail: 'boom' },
      actor: 'runner',
      withLines: true,
      withFailureDetail: true,
    } as const;
    const d = whenRun(whenRun(following, { type: 'exited', exit: { code: 1, signal: null } }).run, {
      type: 'refused',
      command: exit,
      reason: 'invalid byte sequence',
    });
    expect(d.commands).toEqual([{ command: { type: 'recordExit', exitCode: 1, signal: null, detail: 'boom' }, actor: 'runner' }]);
    expect(d.effects).toEqual([
      {
        kind: 'log',
        level: 'warn',
        message: 'task t1: recordExit with its last lines failed (invalid byte sequence); recording it without them',
      },
    ]);
  });
  it('a spawn error or a lost trainer quotes no output detail', () => {
    for (const obs of [{ type: 'exited', exit: { code: null, signal: null, error: 'ENOENT' } }, { type: 'vanished' }] as RunObservation[])
      expect(whenRun(following, obs).commands[0]!.withFailureDetail).toBeUndefined();
  });
  it('a trainer gone with its shepherd: fail as lost, naming the pid', () => {
    const d = whenRun(following, { type: 'vanished' });
    expect(d.commands[0]!.command).toEqual({
      type: 'fail',
      reason: 'lost',
      message: 'trainer process 4242 disappeared without an exit status (its shepherd was killed too)',
    });
  });
  it('an ended run decides nothing more (no second exit, no stop, no SIGKILL, no expire)', () => {
    const ended = whenRun(following, { type: 'exited', exit: { code: 0, signal: null } }).run;
    for (const obs of [
      { type: 'exited', exit: { code: 1, signal: null } },
      { type: 'stop' },
      { type: 'graceOver', graceMs: 5 },
      { type: 'deadline' },
    ] as RunObservation[])
      expect(whenRun(ended, obs)).toEqual({ run: ended, commands: [], effects: [] });
  });
});

describe('decideRun: stop, deadline, kill grace', () => {
  const following = givenRun(preparing, ...launchedAndRecorded);
  it('a stop: SIGTERM and arm the kill; a second stop does nothing', () => {
    const d = whenRun(following, { type: 'stop' });
    expect(effectsOf(d)).toEqual(['log info', 'SIGTERM', 'armKill']);
    expect(whenRun(d.run, { type: 'stop' }).effects).toEqual([]);
  });
  it('the deadline: expire by timeout; when that asks to stop, SIGTERM', () => {
    expect(commandsOf(whenRun(following, { type: 'deadline' }))).toEqual(['expire by timeout']);
    const timingOut = record(ev.submitted(), ev.assigned(), ev.spawned(), ev.stop('timeout'));
    expect(effectsOf(whenRun(following, { type: 'committed', command: 'expire', task: timingOut }))).toEqual([
      'log info',
      'SIGTERM',
      'armKill',
    ]);
    expect(effectsOf(whenRun(following, { type: 'committed', command: 'expire', task: null }))).toEqual([]);
  });
  it('the grace is over and the trainer runs on: SIGKILL, saying so', () => {
    const d = whenRun(whenRun(following, { type: 'stop' }).run, { type: 'graceOver', graceMs: 5000 });
    expect(d.effects).toEqual([
      { kind: 'log', level: 'warn', message: 'task t1: trainer ignored SIGTERM for 5000 ms, sending SIGKILL' },
      { kind: 'signal', signal: 'SIGKILL' },
    ]);
  });
});

describe('withLastOutput', () => {
  it('appends the last lines, or nothing when there are none', () => {
    expect(withLastOutput('gone', ['a', 'b'])).toBe('gone. Last output: a | b');
    expect(withLastOutput('gone', [])).toBe('gone');
  });
});

describe('decideRun: preemption (checkpoint, then stop)', () => {
  const following = givenRun(preparing, ...launchedAndRecorded);
  const checkpointLine = (step: number): RunObservation => ({
    type: 'line',
    line: { seq: 9, stream: 'stdout', line: `{"type":"checkpoint","path":"/out/checkpoints/step-${step}","step":${step}}`, t: 2000 },
    message: { type: 'checkpoint', path: `/out/checkpoints/step-${step}`, step },
  });
  it('asked to preempt: SIGUSR1 (checkpoint now) and arm the preempt grace; nothing appended; a second ask does nothing', () => {
    const d = whenRun(following, { type: 'stop', reason: 'preempt' });
    expect([commandsOf(d), effectsOf(d)]).toEqual([[], ['log info', 'SIGUSR1', 'armPreempt']]);
    expect(whenRun(d.run, { type: 'stop', reason: 'preempt' }).effects).toEqual([]);
  });
  it('its checkpoint line: recorded, stored, and the trainer stopped at once (SIGTERM, kill armed)', () => {
    const asked = whenRun(following, { type: 'stop', reason: 'preempt' }).run;
    const d = whenRun(asked, checkpointLine(40));
    expect([commandsOf(d), effectsOf(d)]).toEqual([['recordCheckpoint by trainer'], ['storeLine', 'log info', 'SIGTERM', 'armKill']]);
    expect(d.commands[0]!.command).toEqual({ type: 'recordCheckpoint', path: '/out/checkpoints/step-40', step: 40 });
  });
  it('cancelled while it checkpoints for a preemption: SIGTERM at once, without waiting out the preempt grace', () => {
    const asked = whenRun(following, { type: 'stop', reason: 'preempt' }).run;
    expect(effectsOf(whenRun(asked, { type: 'stop', reason: 'cancel' }))).toEqual(['log info', 'SIGTERM', 'armKill']);
  });
  it('no checkpoint within the preempt grace: SIGTERM anyway', () => {
    const asked = whenRun(following, { type: 'stop', reason: 'preempt' }).run;
    expect(effectsOf(whenRun(asked, { type: 'preemptGraceOver' }))).toEqual(['log info', 'SIGTERM', 'armKill']);
  });
  it('a checkpoint reported on its own (not preempting): recorded, the trainer goes on', () => {
    const d = whenRun(following, checkpointLine(50));
    expect([commandsOf(d), effectsOf(d)]).toEqual([['recordCheckpoint by trainer'], ['storeLine']]);
  });
  it('preempted before its trainer is known: a plain stop once it is', () => {
    const d = whenRun(givenRun(preparing), { type: 'stop', reason: 'preempt' });
    expect([effectsOf(d), d.run.stopRequested]).toEqual([[], true]);
  });
});

describe('linesMayHaveFailed: when a command that carried output lines failed', () => {
  it('given a refusal by the lifecycle or a task that is gone, then the lines were not the cause', () => {
    expect(linesMayHaveFailed(new IllegalCommandError('t1', 'COMPLETED', 'recordExit', 'the task has ended'))).toBe(false);
    expect(linesMayHaveFailed(new TaskNotFoundError('t1'))).toBe(false);
  });
  it('given any other failure (a line the database refused), then they may have been: refused', () => {
    expect(linesMayHaveFailed(Object.assign(new Error('invalid byte sequence'), { code: '22021' }))).toBe(true);
  });
});
