// What to do with an active task when its runner (re)takes charge of it: after a restart, or
// when a notification arrives for a task it is not following. A pure function of what the
// task record says and what the run folder and process table show, shared by the real runner
// and the deterministic simulation.
import type { TaskRecord } from './task';

export interface RunFacts {
  /** The trainer the shepherd reported in its run folder, if any. */
  trainerFile: { pid: number; startTime: string } | null;
  /** The exit status the shepherd wrote, if the trainer ended (error: it never started). */
  exitFile: { code: number | null; signal: string | null; error?: string } | null;
  /** Whether the recorded trainer (same pid AND same start time) is still running. */
  trainerAlive: boolean;
  /**
   * Whether a shepherd process for this run folder exists. A service killed right after it
   * started the shepherd restarts to a run folder with launch.json but no trainer.json yet: the
   * shepherd is still starting up (a node process on a busy machine takes a while). Launching
   * again then failed ("run directory was already used") while that shepherd went on to start a
   * trainer for a task that no longer held a slot. (Optional: the simulation does not model it.)
   */
  shepherdAlive?: boolean;
}

export type RecoveryAction =
  /** The shepherd started a trainer but the spawn was never recorded: record it, then decide again. */
  | { kind: 'recordSpawn'; pid: number; startTime: string }
  /** No trainer was ever started: start one. */
  | { kind: 'launch' }
  /** A shepherd for this run is starting: wait for it to report its trainer (or end), then decide again. */
  | { kind: 'awaitShepherd' }
  /** The trainer could not be started. */
  | { kind: 'failSpawn'; message: string }
  /** The trainer runs: follow its output and exit. */
  | { kind: 'follow' }
  /** The trainer ended while nobody watched: collect the rest of its output, record its exit. */
  | { kind: 'settle' }
  /** The trainer is gone without an exit status: fail the task, honestly. */
  | { kind: 'failLost'; message: string };

export function decideRecovery(task: Pick<TaskRecord, 'trainer'>, facts: RunFacts): RecoveryAction {
  if (!task.trainer) {
    if (facts.trainerFile) return { kind: 'recordSpawn', ...facts.trainerFile };
    if (facts.exitFile?.error) return { kind: 'failSpawn', message: facts.exitFile.error };
    if (facts.shepherdAlive && !facts.exitFile) return { kind: 'awaitShepherd' };
    return { kind: 'launch' };
  }
  if (facts.trainerAlive) return { kind: 'follow' };
  if (facts.exitFile) return { kind: 'settle' };
  return {
    kind: 'failLost',
    message:
      `trainer process ${task.trainer.pid} is gone and left no exit status (was the machine restarted?); ` +
      `the task cannot be resumed, submit it again`,
  };
}
