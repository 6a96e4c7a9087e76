// decideSlurmJob, given/when/then: given a task's events, when Slurm and its run folder say this,
// then these commands (each decided by the real lifecycle, in order, to the task's next status).
import { describe, expect, it } from 'vitest';
import { decide, evolve, stateFromRecord, toRecord, type NewTaskEvent, type TaskState } from '.';
import { decideSlurmJob, SLURM_RUNNER, type SlurmFacts } from './slurm';
import { ev, given, spec, stored } from '../test/given';

const handed: NewTaskEvent = { type: 'TaskHandedToSlurm', data: { jobId: '42', runDir: '/runs/t1/attempt-1', attempt: 1 } };
const slurmAssigned: NewTaskEvent = {
  type: 'TaskAssigned',
  data: { devices: [], runnerId: SLURM_RUNNER, attempt: 1, grounds: null },
};
const queuedInSlurm = () =>
  given(ev.submitted(spec({ resources: { gpus: 2, memoryMb: null, shared: false, memorySource: null } })), ev.queued(), handed);
const trainingInSlurm = (...more: NewTaskEvent[]) =>
  given(ev.submitted(), ev.queued(), handed, slurmAssigned, ev.spawned(), ev.training(), ...more);

const facts = (over: Partial<SlurmFacts>): SlurmFacts => ({
  view: { phase: 'running' },
  trainer: null,
  exit: null,
  exitWaitOver: false,
  ...over,
});
const ended = (state: string, end: 'completed' | 'failed' | 'timeout' | 'cancelled' | 'preempted', reason = '') =>
  ({ phase: 'ended', end, state, reason }) as const;

/** The commands as `type by actor`, and the status the task reaches when they are decided in order. */
function then(state: TaskState, f: SlurmFacts) {
  const d = decideSlurmJob(toRecord(state), f);
  let s = state;
  const events: NewTaskEvent[] = [];
  for (const step of d.commands) {
    const decided = decide(s, step.command, 't1');
    events.push(...decided);
    s = stored(decided, 't1', s.version, 100 + s.version).reduce(evolve, s);
  }
  return { ...d, steps: d.commands.map((c) => `${c.command.type} by ${c.actor}`), events, status: toRecord(s).status, record: toRecord(s) };
}

describe('a task handed to Slurm', () => {
  it('records the job: the task stays QUEUED, with the job id on its record; one job per attempt', () => {
    const r = toRecord(queuedInSlurm());
    expect(r.status).toBe('QUEUED');
    expect(r.slurmJob).toEqual({ jobId: '42', runDir: '/runs/t1/attempt-1', attempt: 1 });
    expect(() => decide(queuedInSlurm(), { type: 'handToSlurm', jobId: '43', runDir: '/x' }, 't1')).toThrow(
      /Slurm job 42 already runs its next attempt/,
    );
  });

  it('a pending job keeps it queued with Slurm’s reason and the job id', () => {
    const r = then(queuedInSlurm(), facts({ view: { phase: 'pending', reason: 'Resources' } }));
    expect(r.steps).toEqual([]);
    expect(r.queueReason).toBe('Slurm: Resources (job 42)');
  });

  it('a running job assigns it to Slurm with the job’s GPUs, and its run folder is followed', () => {
    const r = then(queuedInSlurm(), facts({ view: { phase: 'running' } }));
    expect(r.steps).toEqual(['assign by slurm']);
    expect(r.status).toBe('PREPARING');
    expect(r.follow).toBe(true);
    expect(r.record.runnerId).toBe(SLURM_RUNNER);
    expect(r.record.devices.map((d) => d.deviceId)).toEqual(['slurm:42:gpu0', 'slurm:42:gpu1']);
  });

  it('the shepherd’s exit status wins over Slurm’s accounting', () => {
    const r = then(trainingInSlurm(), facts({ view: ended('FAILED', 'failed', 'NonZeroExitCode'), exit: { code: 0, signal: null } }));
    expect(r.steps).toEqual(['recordExit by runner']);
    expect(r.status).toBe('COMPLETED');
  });

  it('a failed trainer fails the task with its exit code and Slurm’s word on the job', () => {
    const r = then(trainingInSlurm(), facts({ view: ended('FAILED', 'failed', 'NonZeroExitCode'), exit: { code: 3, signal: null } }));
    expect(r.status).toBe('FAILED');
    expect(r.record.error).toMatchObject({
      reason: 'exit',
      exitCode: 3,
      message: expect.stringContaining('Slurm job 42 ended FAILED (NonZeroExitCode)'),
    });
  });

  it('a job cancelled outside Trainyard is recorded as cancelled by slurm', () => {
    const r = then(trainingInSlurm(), facts({ view: ended('CANCELLED', 'cancelled'), exit: { code: null, signal: 'SIGTERM' } }));
    expect(r.steps).toEqual(['cancel by slurm', 'recordExit by runner']);
    expect(r.status).toBe('CANCELLED');
    expect(r.record.cancelReason).toContain('Slurm job 42 ended CANCELLED');
    // Waiting in Slurm's queue: cancelled at once.
    const q = then(queuedInSlurm(), facts({ view: ended('CANCELLED', 'cancelled') }));
    expect(q.steps).toEqual(['cancel by slurm']);
    expect(q.status).toBe('CANCELLED');
  });

  it('a trainer signalled while Slurm still says running waits for Slurm’s word, then decides without it', () => {
    const signalled = { code: null, signal: 'SIGTERM' };
    expect(then(trainingInSlurm(), facts({ view: { phase: 'running' }, exit: signalled })).steps).toEqual([]);
    const r = then(trainingInSlurm(), facts({ view: { phase: 'unknown', state: '' }, exit: signalled, exitWaitOver: true }));
    expect(r.steps).toEqual(['recordExit by runner']);
    expect(r.status).toBe('FAILED');
  });

  it('Slurm’s TIMEOUT fails it as timed out; PREEMPTED puts it back in the queue for a new job', () => {
    const t = then(trainingInSlurm(), facts({ view: ended('TIMEOUT', 'timeout'), exit: { code: null, signal: 'SIGTERM' } }));
    expect(t.steps).toEqual(['expire by slurm', 'recordExit by runner']);
    expect(t.record.error).toMatchObject({ reason: 'timeout', message: expect.stringContaining('Slurm job 42 ended TIMEOUT') });
    const p = then(trainingInSlurm(), facts({ view: ended('PREEMPTED', 'preempted'), exit: { code: null, signal: 'SIGTERM' } }));
    expect(p.status).toBe('QUEUED');
    // Its job was for attempt 1, which ended: a new one is due.
    expect(p.record.slurmJob?.attempt).toBe(1);
    expect(p.record.attempt).toBe(1);
    expect(decide(stateFromRecord(p.record), { type: 'handToSlurm', jobId: '43', runDir: '/runs/t1/attempt-2' }, 't1')).toEqual([
      { type: 'TaskHandedToSlurm', data: { jobId: '43', runDir: '/runs/t1/attempt-2', attempt: 2 } },
    ]);
  });

  it('an unanswering controller or an unlisted job ends nothing, however long', () => {
    for (const exitWaitOver of [false, true]) {
      const r = then(trainingInSlurm(), facts({ view: { phase: 'unknown', state: '' }, exitWaitOver }));
      expect(r.steps).toEqual([]);
      expect(r.status).toBe('TRAINING');
    }
  });

  it('a job that ended with no exit status: nothing until the wait is over, then Slurm’s explicit end decides', () => {
    expect(then(trainingInSlurm(), facts({ view: ended('NODE_FAIL', 'failed') })).steps).toEqual([]);
    const r = then(trainingInSlurm(), facts({ view: ended('NODE_FAIL', 'failed'), exitWaitOver: true }));
    expect(r.steps).toEqual(['fail by slurm']);
    expect(r.record.error).toMatchObject({ reason: 'lost', message: expect.stringContaining('Slurm job 42 ended NODE_FAIL') });
  });

  it('a job that ran while the service was down is settled from its run folder: assigned, spawned, ended', () => {
    const r = then(
      queuedInSlurm(),
      facts({ view: ended('COMPLETED', 'completed'), trainer: { pid: 7, startTime: '9' }, exit: { code: 0, signal: null } }),
    );
    expect(r.steps).toEqual(['assign by slurm', 'recordSpawn by runner', 'recordExit by runner']);
    expect(r.status).toBe('COMPLETED');
  });

  it('an ended task whose job Slurm still runs has the job cancelled; a paused one gives its job up', () => {
    expect(
      decideSlurmJob(toRecord(given(ev.submitted(), ev.queued(), handed, ev.cancelled())), facts({ view: { phase: 'running' } })).scancel,
    ).toBe(true);
    const held = toRecord(given(ev.submitted(), ev.queued(), handed, { type: 'TaskHeld', data: { reason: null } }));
    expect(held.slurmJob).toBeNull();
    expect(decideSlurmJob(held, facts({ view: ended('CANCELLED', 'cancelled') })).commands).toEqual([]);
  });
});
