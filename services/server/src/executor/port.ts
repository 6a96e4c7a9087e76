// The scheduler/executor port: what the service asks of whatever places and runs its tasks.
// `local` is this machine: the scheduling policy places tasks on its devices in the store's
// transactions and the runner (runner.ts) runs them; it needs nothing beyond what the service
// already wires, so its side of the port is trivial. `slurm` hands each task to a Slurm cluster
// (slurm-executor.ts). A further executor (Kubernetes: docs/KUBERNETES.md) is one more module
// implementing this interface.
import type { Device } from '@trainyard/domain';

export interface ExecutorHealth {
  /** Which executor is active. */
  executor: 'local' | 'slurm';
  /** Whether it answers (local: always; slurm: `scontrol ping`). */
  reachable: boolean;
  /** What it said, in a line (only for admins: it may name hosts). */
  detail: string;
}

export interface Executor {
  readonly kind: 'local' | 'slurm';
  /** Whether the store's policy places tasks on this machine's devices (false: the executor places them). */
  readonly placesLocally: boolean;
  /**
   * Start-up, after the runner's recovery: reconcile every active task with what runs them, and
   * from then on hand over each task as it is created or queued again (it follows the log).
   */
  start(): Promise<void>;
  /** What a task's resource request is checked against, given this machine's devices. */
  requestDevices(local: readonly Device[]): readonly Device[];
  /** Why a queued task waits, when the executor knows better than the local policy (null: ask the policy). */
  queueReason(taskId: string): string | null;
  health(): Promise<ExecutorHealth>;
  close(): void;
}

/** Today's behaviour: the policy and the runner of this machine (the default). */
export class LocalExecutor implements Executor {
  readonly kind = 'local' as const;
  readonly placesLocally = true;
  async start(): Promise<void> {}
  requestDevices(local: readonly Device[]): readonly Device[] {
    return local;
  }
  queueReason(): string | null {
    return null;
  }
  async health(): Promise<ExecutorHealth> {
    return { executor: 'local', reachable: true, detail: 'this machine runs its tasks' };
  }
  close(): void {}
}
