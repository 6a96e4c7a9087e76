// What Slurm's view of a job means for the task it runs, and what one batched poll of the
// controller means for every active task. Pure: the executor (services/server/src/executor/slurm.ts)
// asks Slurm and carries the verdicts out.
//
// The rule that matters most: only an explicit terminal state from Slurm (or the shepherd's exit
// file, which the runner reads and which wins over Slurm) ends a task. A controller that does not
// answer, or a job it no longer lists, is "unknown", never "dead".

/** Slurm's job states (squeue %T, long form) as Slurm 22.05 names them. */
const SLURM_PENDING_STATES = ['PENDING', 'REQUEUED', 'REQUEUE_HOLD', 'REQUEUE_FED', 'RESV_DEL_HOLD', 'SUSPENDED'] as const;
const SLURM_RUNNING_STATES = ['CONFIGURING', 'RUNNING', 'COMPLETING', 'RESIZING', 'SIGNALING', 'STAGE_OUT', 'STOPPED'] as const;

/** How a job that Slurm says has ended ended, in our terms. */
export type SlurmEnd = 'completed' | 'failed' | 'timeout' | 'cancelled' | 'preempted';

export type SlurmJobView =
  /** Waiting in Slurm's queue: the task stays QUEUED, with Slurm's reason as its queue reason. */
  | { phase: 'pending'; reason: string }
  /** Slurm runs it: the trainer's own phase lines say PREPARING or TRAINING. */
  | { phase: 'running' }
  /** Slurm says it ended (the shepherd's exit status, when there is one, wins over this). */
  | { phase: 'ended'; end: SlurmEnd; state: string; reason: string }
  /** A state this mapping does not know: nothing is concluded from it. */
  | { phase: 'unknown'; state: string };

const ENDS: Record<string, SlurmEnd> = {
  COMPLETED: 'completed',
  FAILED: 'failed',
  OUT_OF_MEMORY: 'failed',
  NODE_FAIL: 'failed',
  BOOT_FAIL: 'failed',
  DEADLINE: 'timeout',
  TIMEOUT: 'timeout',
  CANCELLED: 'cancelled',
  REVOKED: 'cancelled',
  PREEMPTED: 'preempted',
};

/** One job's state and reason as squeue reports them (`%T`, `%r`). */
export function viewSlurmJob(state: string, reason: string): SlurmJobView {
  // `CANCELLED by 0` (scontrol's long form) and `CANCELLED+` (sacct's) name the same state.
  const s = state.trim().toUpperCase().split(/[\s+]/)[0] ?? '';
  const r = reason.trim() === 'None' ? '' : reason.trim();
  if ((SLURM_PENDING_STATES as readonly string[]).includes(s)) return { phase: 'pending', reason: r || 'waiting in the Slurm queue' };
  if ((SLURM_RUNNING_STATES as readonly string[]).includes(s)) return { phase: 'running' };
  const end = ENDS[s];
  if (end) return { phase: 'ended', end, state: s, reason: r };
  return { phase: 'unknown', state: s };
}

/** One batched look at the controller: every listed job's state and reason, or why there was no answer. */
export type SlurmPoll = { ok: true; jobs: ReadonlyMap<string, { state: string; reason: string }> } | { ok: false; error: string };

export type SlurmVerdict =
  | { jobId: string; view: Exclude<SlurmJobView, { phase: 'unknown' }> }
  /** Nothing is concluded this time: the controller did not answer, or does not list the job (any more). */
  | { jobId: string; view: { phase: 'unknown'; state: string }; why: 'unreachable' | 'not-listed' | 'unknown-state' };

/** What one poll says about each active job. A failed poll or a job not listed ends nothing. */
export function judgeSlurmPoll(jobIds: readonly string[], poll: SlurmPoll): SlurmVerdict[] {
  return jobIds.map((jobId) => {
    if (!poll.ok) return { jobId, view: { phase: 'unknown', state: '' }, why: 'unreachable' };
    const seen = poll.jobs.get(jobId);
    if (!seen) return { jobId, view: { phase: 'unknown', state: '' }, why: 'not-listed' };
    const view = viewSlurmJob(seen.state, seen.reason);
    return view.phase === 'unknown' ? { jobId, view, why: 'unknown-state' } : { jobId, view };
  });
}

/**
 * The wait before the next poll: `baseMs` while the controller answers, doubling (up to `maxMs`)
 * with each poll in a row that got no answer, so a controller that is down is not hammered.
 */
export function slurmPollDelay(failuresInARow: number, baseMs: number, maxMs: number): number {
  if (failuresInARow <= 0) return baseMs;
  return Math.min(maxMs, baseMs * 2 ** Math.min(failuresInARow, 30));
}

/** Slurm's `--time` (whole minutes, at least one) for a task's timeout. */
export function slurmTimeLimit(timeoutMs: number): string {
  return String(Math.max(1, Math.ceil(timeoutMs / 60_000)));
}
