import { describe, expect, it } from 'vitest';
import { judgeSlurmPoll, slurmPollDelay, slurmTimeLimit, viewSlurmJob } from './slurm';

describe("Slurm's job states in our terms", () => {
  it('a pending job stays queued, with Slurm’s reason', () => {
    expect(viewSlurmJob('PENDING', 'Resources')).toEqual({ phase: 'pending', reason: 'Resources' });
    expect(viewSlurmJob('PENDING', 'None')).toEqual({ phase: 'pending', reason: 'waiting in the Slurm queue' });
  });

  it('running and its neighbours are running', () => {
    for (const s of ['RUNNING', 'CONFIGURING', 'COMPLETING']) expect(viewSlurmJob(s, 'None')).toEqual({ phase: 'running' });
  });

  it.each([
    ['COMPLETED', 'completed'],
    ['FAILED', 'failed'],
    ['OUT_OF_MEMORY', 'failed'],
    ['NODE_FAIL', 'failed'],
    ['TIMEOUT', 'timeout'],
    ['CANCELLED', 'cancelled'],
    ['CANCELLED by 0', 'cancelled'],
    ['CANCELLED+', 'cancelled'],
    ['PREEMPTED', 'preempted'],
  ])('%s ends the job as %s', (state, end) => {
    expect(viewSlurmJob(state, 'NonZeroExitCode')).toMatchObject({ phase: 'ended', end, reason: 'NonZeroExitCode' });
  });

  it('a state it does not know concludes nothing', () => {
    expect(viewSlurmJob('SPECIAL_EXIT', 'None')).toEqual({ phase: 'unknown', state: 'SPECIAL_EXIT' });
  });
});

describe('one batched poll for all active jobs', () => {
  it('a controller that does not answer ends no job', () => {
    const verdicts = judgeSlurmPoll(['1', '2'], { ok: false, error: 'Unable to contact slurm controller' });
    expect(verdicts.map((v) => v.view.phase)).toEqual(['unknown', 'unknown']);
    expect(verdicts.every((v) => 'why' in v && v.why === 'unreachable')).toBe(true);
  });

  it('a job the controller does not list is unknown, not dead; the others are judged', () => {
    const jobs = new Map([
      ['1', { state: 'RUNNING', reason: 'None' }],
      ['3', { state: 'PENDING', reason: 'Resources' }],
    ]);
    expect(judgeSlurmPoll(['1', '2', '3'], { ok: true, jobs })).toEqual([
      { jobId: '1', view: { phase: 'running' } },
      { jobId: '2', view: { phase: 'unknown', state: '' }, why: 'not-listed' },
      { jobId: '3', view: { phase: 'pending', reason: 'Resources' } },
    ]);
  });

  it('backs off while the controller is down, up to a limit', () => {
    expect([0, 1, 2, 3, 10].map((n) => slurmPollDelay(n, 1000, 30_000))).toEqual([1000, 2000, 4000, 8000, 30_000]);
  });
});

it("a task's timeout is Slurm's --time in whole minutes, at least one", () => {
  expect(slurmTimeLimit(1000)).toBe('1');
  expect(slurmTimeLimit(60_000)).toBe('1');
  expect(slurmTimeLimit(61_000)).toBe('2');
  expect(slurmTimeLimit(6 * 3_600_000)).toBe('360');
});
