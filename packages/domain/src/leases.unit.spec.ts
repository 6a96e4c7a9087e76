import { describe, expect, it } from 'vitest';
import { decide, decideAbandon, decideLeases, evolve, IllegalCommandError, toRecord, type LeaseView } from '.';
import { ev, given, stored, when } from '../test/given';

const TERM = 3000;
const lease = (runnerId: string, ageMs: number, over: Partial<LeaseView> = {}): LeaseView => ({
  runnerId,
  ageMs,
  unbrokenMs: 60_000,
  takenBy: null,
  ...over,
});

describe('decideLeases: given this instance and the leases, then what it takes over', () => {
  const me = lease('me', 100);

  it('a lease renewed within its term is left alone, however quiet its trainers', () => {
    expect(decideLeases('me', me, [me, lease('a', TERM - 1)], TERM)).toEqual({ takeOver: [], abandon: [] });
  });

  it('a lease not renewed for a whole term is taken over and its tasks go back', () => {
    expect(decideLeases('me', me, [me, lease('a', TERM + 1), lease('b', 10)], TERM)).toEqual({ takeOver: ['a'], abandon: ['a'] });
  });

  it('an instance whose own heartbeat failed judges nobody (unreachable is not dead)', () => {
    expect(decideLeases('me', null, [lease('a', 10 * TERM)], TERM)).toEqual({ takeOver: [], abandon: [] });
  });

  it('after a database outage nobody is expired until this instance has seen the database for a whole term', () => {
    const justBack = lease('me', 0, { unbrokenMs: 500 });
    expect(decideLeases('me', justBack, [justBack, lease('a', 10 * TERM)], TERM)).toEqual({ takeOver: [], abandon: [] });
  });

  it('an own lease that is stale or was taken judges nobody', () => {
    expect(decideLeases('me', lease('me', TERM), [lease('a', 10 * TERM)], TERM).takeOver).toEqual([]);
    expect(decideLeases('me', lease('me', 0, { takenBy: 'x' }), [lease('a', 10 * TERM)], TERM).takeOver).toEqual([]);
  });

  it('a lease taken earlier (its taker may have died half-way) still has its tasks put back, without taking it again', () => {
    expect(decideLeases('me', me, [lease('a', 5 * TERM, { takenBy: 'b' })], TERM)).toEqual({ takeOver: [], abandon: ['a'] });
  });
});

describe('abandon: given a task of a lost instance, when taken back, then', () => {
  const cmd = (requeue = true) => ({
    type: 'abandon' as const,
    runnerId: 'r1',
    message: 'instance r1 stopped renewing its lease',
    requeue,
  });
  const running = () => [ev.submitted(), ev.queued(), ev.assigned(), ev.spawned(), ev.training()];
  const checkpoint = { type: 'CheckpointRecorded' as const, data: { path: '/out/t1/checkpoints/step-5', step: 5 } };

  it('it is queued again in its place, with its checkpoint, its devices freed, not counted as a preemption', () => {
    const state = given(...running(), checkpoint);
    const events = decide(state, cmd());
    expect(events).toEqual([
      {
        type: 'TaskPreempted',
        data: {
          exitCode: null,
          signal: null,
          checkpoint: { path: '/out/t1/checkpoints/step-5', step: 5 },
          lost: { runnerId: 'r1', message: cmd().message },
        },
      },
    ]);
    const after = toRecord(stored(events, 't1', state.version, 100).reduce(evolve, state));
    expect(after).toMatchObject({ status: 'QUEUED', devices: [], runnerId: null, trainer: null, preemptions: 0, queuedPosition: '2' });
    expect(after.checkpoint).toEqual({ path: '/out/t1/checkpoints/step-5', step: 5 });
  });

  it('with requeueing off, a task with no checkpoint fails as lost; one with a checkpoint still resumes', () => {
    const [failed] = decide(given(...running()), cmd(false));
    expect(failed).toMatchObject({ type: 'TaskFailed', data: { reason: 'lost' } });
    expect((failed!.data as { message: string }).message).toMatch(/TRAINYARD_REQUEUE_LOST/);
    expect(when(given(...running(), checkpoint), cmd(false))).toEqual(['TaskPreempted']);
  });

  it('a task whose trainer never started is requeued even with requeueing off', () => {
    expect(when(given(ev.submitted(), ev.assigned()), cmd(false))).toEqual(['TaskPreempted']);
  });

  it('a stop already asked for decides as the exit would have', () => {
    expect(when(given(...running(), ev.stop('cancel')), cmd())).toEqual(['TaskCancelled']);
    const [t] = decide(given(...running(), ev.stop('timeout')), cmd());
    expect(t).toMatchObject({ type: 'TaskFailed', data: { reason: 'timeout' } });
    expect(when(given(...running(), ev.stop('preempt')), cmd(false))).toEqual(['TaskPreempted']);
  });

  it('a task held by another instance (or no longer running) is refused', () => {
    const err = when(given(...running()), { ...cmd(), runnerId: 'r2' });
    expect(err).toBeInstanceOf(IllegalCommandError);
    expect((err as Error).message).toMatch(/held by r1, not by r2/);
    expect(when(given(ev.submitted(), ev.queued()), cmd())).toBeInstanceOf(IllegalCommandError);
  });

  it('decideAbandon names only the lost instance active tasks', () => {
    const mine = toRecord(given(...running()));
    const queued = { ...toRecord(given(ev.submitted(), ev.queued())), id: 't2' };
    const other = { ...mine, id: 't3', runnerId: 'r2' };
    const out = decideAbandon(lease('r1', 9000), [mine, queued, other], TERM, true);
    expect(out.map((c) => c.taskId)).toEqual(['t1']);
    expect(out[0]!.command).toMatchObject({ type: 'abandon', runnerId: 'r1', requeue: true });
    expect(out[0]!.command.message).toMatch(/instance r1 stopped renewing its lease \(last heartbeat 9 s ago, term 3 s\)/);
  });
});
