// What Slurm's view of a job means for the task it runs, and what one batched poll of the
// controller means for every active task. Pure: the executor (services/server/src/executor/slurm.ts)
// asks Slurm and carries the verdicts out.
//
// The rule that matters most: only an explicit terminal state from Slurm (or the shepherd's exit
// file, which the runner reads and which wins over Slurm) ends a task. A controller that does not
// answer, or a job it no longer lists, is "unknown", never "dead".
import type { TaskCommand } from './lifecycle';
import type { DeviceGrant } from './resources';
import type { RunExit } from './run';
import { isTerminal, type TaskRecord } from './task';

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

// ---------------------------------------------------------------------------------------------
// What the executor does about one task's Slurm job, from what Slurm and the run folder say.

/** The instance name a task run by Slurm is assigned to: no service instance runs its trainer, and no lease covers it. */
export const SLURM_RUNNER = 'slurm';

/** Who records what: Slurm's verdicts, the run folder's files (the shepherd), the trainer's lines. */
export type SlurmActor = 'slurm' | 'runner' | 'trainer';

export interface SlurmStep {
  command: TaskCommand;
  actor: SlurmActor;
}

export interface SlurmFacts {
  /** What the last poll said about the task's job. */
  view: SlurmJobView;
  /** trainer.json: the trainer the shepherd started inside the job, once it did. */
  trainer: { pid: number; startTime: string } | null;
  /** exit.json, once every output line before it was read (the shepherd's word; it wins over Slurm's). */
  exit: RunExit | null;
  /**
   * Slurm says the job ended and the run folder has no exit status yet: false while it may still
   * appear (a shared filesystem's delay, the shepherd finishing), true once waited for long enough.
   */
  exitWaitOver: boolean;
}

export interface SlurmDecision {
  commands: SlurmStep[];
  /** The job should not be there (the task ended, or was paused): cancel it. */
  scancel: boolean;
  /** Follow the run folder (its output and exit): the job runs or ran the trainer. */
  follow: boolean;
  /** Why a queued task waits, in Slurm's words (the queue's reason for it); null when it does not wait in Slurm. */
  queueReason: string | null;
}

const nothing: SlurmDecision = { commands: [], scancel: false, follow: false, queueReason: null };

/** Whether `task`'s recorded Slurm job is the one for its current (or next) attempt. */
export function slurmJobCurrent(task: Pick<TaskRecord, 'slurmJob' | 'attempt' | 'status'>): boolean {
  const job = task.slurmJob;
  if (!job) return false;
  return task.status === 'QUEUED' ? job.attempt > task.attempt : job.attempt === task.attempt;
}

/** The devices a Slurm job's GPUs are recorded as (device ids of no local inventory). */
export function slurmGrants(jobId: string, gpus: number): DeviceGrant[] {
  return Array.from({ length: Math.max(1, gpus) }, (_, i) => ({
    deviceId: `slurm:${jobId}:gpu${i}`,
    gpuIndex: i,
    uuid: null,
    migProfile: null,
    memoryMb: 0,
    exclusive: true,
  }));
}

function describeEnd(jobId: string, view: Extract<SlurmJobView, { phase: 'ended' }>): string {
  return `Slurm job ${jobId} ended ${view.state}${view.reason ? ` (${view.reason})` : ''}`;
}

/**
 * What Slurm's view of a task's job, and its run folder, mean for the task: the commands to record
 * (in order, each with its actor), whether to cancel the job, follow the run folder, and the reason
 * a queued task waits. The shepherd's exit status decides how a trainer ended; Slurm's end says why
 * a trainer was stopped that Trainyard did not stop (cancelled, timed out or preempted in Slurm),
 * and ends a task only when it is explicit and the run folder has no exit status after waiting.
 * A job Slurm does not answer about (unknown) ends nothing.
 */
export function decideSlurmJob(task: TaskRecord, facts: SlurmFacts): SlurmDecision {
  const job = task.slurmJob;
  if (!job) return nothing;
  const { view } = facts;
  const live = view.phase === 'pending' || view.phase === 'running';
  // A task cancelled while its job waited or started: the job goes. (One that completed or failed ended with its job.)
  if (isTerminal(task.status)) return { ...nothing, scancel: live && task.status === 'CANCELLED' };
  if (!slurmJobCurrent(task)) return nothing; // an earlier attempt's job: its end was recorded
  const jobId = job.jobId;
  const commands: SlurmStep[] = [];
  if (task.status === 'QUEUED' || task.status === 'PENDING') {
    if (view.phase === 'pending') return { ...nothing, queueReason: `Slurm: ${view.reason} (job ${jobId})` };
    if (view.phase === 'unknown') return nothing;
    if (view.phase === 'ended' && !facts.exit && !facts.trainer) {
      // The job ended before its trainer started.
      if (view.end === 'cancelled')
        return {
          ...nothing,
          commands: [{ command: { type: 'cancel', reason: `${describeEnd(jobId, view)}, cancelled outside Trainyard` }, actor: 'slurm' }],
        };
      if (!facts.exitWaitOver) return nothing;
      return {
        ...nothing,
        commands: [
          {
            command: { type: 'assign', devices: slurmGrants(jobId, task.spec.resources.gpus), runnerId: SLURM_RUNNER, grounds: null },
            actor: 'slurm',
          },
          { command: { type: 'fail', reason: 'spawn', message: `${describeEnd(jobId, view)} before its trainer started` }, actor: 'slurm' },
        ],
      };
    }
    // Slurm runs it (or ran it while nobody looked): it holds the job's GPUs from now on.
    commands.push({
      command: { type: 'assign', devices: slurmGrants(jobId, task.spec.resources.gpus), runnerId: SLURM_RUNNER, grounds: null },
      actor: 'slurm',
    });
  }
  if (facts.trainer && !task.trainer)
    commands.push({
      command: { type: 'recordSpawn', pid: facts.trainer.pid, startTime: facts.trainer.startTime, runDir: job.runDir },
      actor: 'runner',
    });
  const stopped = task.stop !== null;
  if (facts.exit) {
    // The shepherd's word on the trainer. A trainer stopped by Slurm and not by us: Slurm's reason first.
    const exit = facts.exit;
    // A trainer that failed or was signalled while nobody here stopped it: wait (a while) for
    // Slurm's word on why, so that a job cancelled or timed out in Slurm is recorded as such.
    if (!exit.error && exit.code !== 0 && !stopped && view.phase !== 'ended' && !facts.exitWaitOver)
      return { ...nothing, commands, follow: true };
    if (exit.error) commands.push({ command: { type: 'fail', reason: 'spawn', message: exit.error }, actor: 'runner' });
    else {
      if (exit.code !== 0 && !stopped && view.phase === 'ended') commands.push(...slurmStop(jobId, view));
      commands.push({
        command: {
          type: 'recordExit',
          exitCode: exit.code,
          signal: exit.signal,
          ...(view.phase === 'ended' ? { detail: describeEnd(jobId, view) } : {}),
        },
        actor: 'runner',
      });
    }
    return { ...nothing, commands };
  }
  if (view.phase === 'ended') {
    if (!facts.exitWaitOver) return { ...nothing, commands, follow: true };
    // Slurm says it ended and the shepherd left no exit status (it was killed with the job).
    if (stopped || view.end === 'cancelled' || view.end === 'timeout' || view.end === 'preempted') {
      if (!stopped) commands.push(...slurmStop(jobId, view));
      commands.push({
        command: {
          type: 'recordExit',
          exitCode: null,
          signal: 'SIGKILL',
          detail: `${describeEnd(jobId, view)}; its shepherd left no exit status`,
        },
        actor: 'slurm',
      });
    } else
      commands.push({
        command: {
          type: 'fail',
          reason: view.state === 'NODE_FAIL' || view.end === 'completed' ? 'lost' : 'exit',
          message: `${describeEnd(jobId, view)}; its shepherd left no exit status`,
        },
        actor: 'slurm',
      });
    return { ...nothing, commands };
  }
  return { ...nothing, commands, follow: true };
}

/** The stop that explains a trainer Slurm ended on its own: cancelled, timed out or preempted there. */
function slurmStop(jobId: string, view: Extract<SlurmJobView, { phase: 'ended' }>): SlurmStep[] {
  const said = describeEnd(jobId, view);
  switch (view.end) {
    case 'cancelled':
      return [{ command: { type: 'cancel', reason: `${said}, cancelled outside Trainyard` }, actor: 'slurm' }];
    case 'timeout':
      return [{ command: { type: 'expire', message: `${said}: its time limit (--time) passed` }, actor: 'slurm' }];
    case 'preempted':
      return [
        {
          command: { type: 'preempt', message: `${said}: Slurm preempted it; it resumes from its checkpoint in a new job` },
          actor: 'slurm',
        },
      ];
    default:
      return [];
  }
}
