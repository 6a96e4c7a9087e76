// Trainers a previous process of this instance left behind. Trainers run under detached
// shepherds and outlive the service; while it was down (or stalled) past its lease term a peer
// may have taken its tasks over and started them again elsewhere. The restarted instance then
// finds, in its own run folders, trainers of runs that are no longer its to run: they must be
// stopped, or two trainers of one task run at once and a GPU stays held by nobody's task.
// Pure: the edge lists its run folders and asks /proc which trainers still live; it stops the
// ones this decides.
import { SLURM_RUNNER } from './slurm';
import { isActive } from './status';
import type { TaskRecord } from './task';

/** One run folder of this instance (`<runs>/<task>/attempt-<n>`) whose trainer was started and has not exited. */
export interface RunFolderView {
  taskId: string;
  attempt: number;
  trainer: { pid: number; startTime: string };
  /** Whether that trainer (same pid and start time) still runs. */
  trainerAlive: boolean;
}

export interface LeftoverTrainer {
  taskId: string;
  attempt: number;
  pid: number;
  startTime: string;
  /** Why it is stopped, for the log. */
  message: string;
}

type TaskView = Pick<TaskRecord, 'status' | 'runnerId' | 'attempt' | 'deleted'>;

/** Where a task stands, in words: whose run it is now. */
function whereNow(task: TaskView | undefined): string {
  if (!task || task.deleted) return 'no longer exists';
  if (!isActive(task.status)) return `is ${task.status}`;
  return `is attempt ${task.attempt} on ${task.runnerId ?? 'no instance'}`;
}

/**
 * The live trainers in `self`'s run folders to stop: each whose run is not the current attempt of
 * an active task held by `self` (the task went back to the queue, to a peer, or ended, was
 * deleted, or runs a later attempt). A trainer of a run `self` still holds is left alone: the
 * runner's recovery re-attaches it; so is one of an attempt later than the task's (a run handed
 * to an executor before the log records its assignment).
 */
export function decideLeftovers(self: string, runs: readonly RunFolderView[], tasks: ReadonlyMap<string, TaskView>): LeftoverTrainer[] {
  const out: LeftoverTrainer[] = [];
  for (const r of runs) {
    if (!r.trainerAlive) continue;
    const task = tasks.get(r.taskId);
    const ours = task !== undefined && !task.deleted && isActive(task.status) && task.runnerId === self && task.attempt === r.attempt;
    // A run of an attempt the log has not recorded yet (handed to an executor before its assignment) is not judged here.
    const ahead = task !== undefined && !task.deleted && r.attempt > task.attempt;
    // A run of a Slurm job (TRAINYARD_EXECUTOR=slurm) is Slurm's to run and to stop (scancel), not this process's.
    const slurms = task?.runnerId === SLURM_RUNNER;
    if (ours || ahead || slurms) continue;
    out.push({
      taskId: r.taskId,
      attempt: r.attempt,
      pid: r.trainer.pid,
      startTime: r.trainer.startTime,
      message:
        `trainer ${r.trainer.pid} of task ${r.taskId} (attempt ${r.attempt}) was left running by this instance's previous process, ` +
        `but the task ${whereNow(task)}: stopping it`,
    });
  }
  return out;
}
